"""The ``arch`` option shared by MTPSL and JTR: their CPU-sized "compact" networks or the published layouts."""

from __future__ import annotations

from typing import Any

ARCHS = ("compact", "reference")


def check_arch(method: str, options: Any, compact_only: dict[str, Any]) -> None:
    """``options.arch`` must be one of ARCHS; with "reference" the options that only shape the compact network
    must stay at their defaults (the published layout fixes widths, strides and normalization), so that a
    setting the reference network would not honour is refused rather than silently ignored."""
    if options.arch not in ARCHS:
        raise ValueError(f"{method}.arch={options.arch!r}: allowed {list(ARCHS)}")
    if options.arch == "reference":
        changed = [f"{k}={getattr(options, k)!r}" for k, v in compact_only.items() if getattr(options, k) != v]
        if changed:
            raise ValueError(f"{method}.arch='reference' fixes the published layout; {', '.join(changed)} only "
                             f"applies to arch='compact' (leave {sorted(compact_only)} at their defaults)")
