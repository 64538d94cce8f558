"""Write figures to disk: interactive HTML that works offline, and PNG through kaleido.

Why a module: kaleido 1.x renders through a Chromium it looks up itself (``BROWSER_PATH``, then ``chromium`` /
``chrome`` on PATH and a few usual paths, then its own download). We point it at the system browser explicitly so
that no download is ever attempted, and a machine without a browser still gets the HTML with one clear message
instead of a traceback from the middle of a notebook.
"""

from __future__ import annotations

import os
import shutil
import warnings
from pathlib import Path

import plotly.graph_objects as go

from ..core.io import atomic_write_bytes, atomic_write_text

BROWSER_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")
BROWSER_NAMES = ("chromium", "chromium-browser", "google-chrome", "chrome")
NO_BROWSER_MESSAGE = ("PNG export skipped: kaleido needs a Chromium/Chrome browser and none was found "
                      "(set BROWSER_PATH or install one, e.g. `apt-get install -y chromium`); "
                      "the interactive HTML was still written.")


class PNGExportUnavailable(UserWarning):
    """PNG export was skipped (no browser, or the browser failed); HTML is still written."""


def find_browser() -> str | None:
    """Path of a system Chromium/Chrome executable, or None (never a downloaded one)."""
    env = os.environ.get("BROWSER_PATH")
    if env and os.access(env, os.X_OK):
        return env
    for path in BROWSER_CANDIDATES:
        if os.access(path, os.X_OK):
            return path
    for name in BROWSER_NAMES:
        if found := shutil.which(name):
            return found
    return None


def write_html(fig: go.Figure, path: str | Path) -> Path:
    """Self-contained HTML: plotly.js is embedded so the file opens with no network."""
    return atomic_write_text(path, fig.to_html(include_plotlyjs=True, full_html=True))


def write_png(fig: go.Figure, path: str | Path, scale: float = 1.0, width: int | None = None,
              height: int | None = None) -> Path | None:
    """PNG via kaleido and the system browser; None (with one warning saying why) when that is impossible."""
    browser = find_browser()
    if browser is None:
        warnings.warn(NO_BROWSER_MESSAGE, PNGExportUnavailable, stacklevel=2)
        return None
    os.environ["BROWSER_PATH"] = browser          # kaleido/choreographer read it: never fetch a browser
    error = None
    for _ in range(2):   # a loaded machine sometimes fails a render once ("kaleido_scopes is not defined"): retry
        try:
            data = fig.to_image(format="png", scale=scale, width=width, height=height)
            return atomic_write_bytes(path, data)
        except Exception as e:  # noqa: BLE001  (kaleido wraps browser failures in several types)
            error = e
    warnings.warn(f"PNG export of {Path(path).name} failed twice with browser {browser!r}: {error}; "
                  "the interactive HTML was still written.", PNGExportUnavailable, stacklevel=2)
    return None


def export_figure(fig: go.Figure, directory: str | Path, name: str, png: bool = True,
                  scale: float = 1.0) -> dict[str, Path | None]:
    """``<directory>/<name>.html`` always, ``<name>.png`` when a browser is present."""
    directory = Path(directory)
    out: dict[str, Path | None] = {"html": write_html(fig, directory / f"{name}.html")}
    out["png"] = write_png(fig, directory / f"{name}.png", scale=scale) if png else None
    return out
