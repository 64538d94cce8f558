"""Options shared by MTPSL and JTR: ``arch`` (their CPU-sized "compact" networks or the published layouts) and
``fidelity`` (the paper's equations or exactly what the published code computes).

``fidelity`` is one switch over a method's individual differences from its published code; each difference is
also an option of its own, ``None`` by default, meaning "as ``fidelity`` says". ``"auto"`` (the default) is
``"published_code"`` with ``arch="reference"`` (whoever asks for the published network wants its computation) and
``"paper"`` with ``arch="compact"`` (the cleaner reading of the equations; and the built-in runs made before the
switch existed keep their run ids *and* their numbers, since a method's options enter a run's identity only as
they are written in the config).
"""

from __future__ import annotations

from typing import Any

ARCHS = ("compact", "reference")
FIDELITIES = ("auto", "paper", "published_code")


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


def resolve_fidelity(method: str, options: Any, switches: dict[str, tuple[Any, Any, tuple]]) -> None:
    """Resolve ``options.fidelity`` ("auto" → by ``options.arch``) and every switch left at None, in place.

    ``switches``: {option name: (paper value, published-code value, allowed values)}. A switch given explicitly
    is kept (and checked against its allowed values), so one difference can be reversed under either setting.
    """
    if options.fidelity not in FIDELITIES:
        raise ValueError(f"{method}.fidelity={options.fidelity!r}: allowed {list(FIDELITIES)}")
    if options.fidelity == "auto":
        options.fidelity = "published_code" if options.arch == "reference" else "paper"
    for name, (paper, published, allowed) in switches.items():
        value = getattr(options, name)
        if value is None:
            setattr(options, name, published if options.fidelity == "published_code" else paper)
        elif not any(value == a and type(value) is type(a) for a in allowed):      # 1 is not True here
            raise ValueError(f"{method}.{name}={value!r}: allowed {list(allowed)} (or null: as fidelity says)")
