"""Execute parametrized notebooks headlessly (papermill) and export them to HTML.

Parameters are checked against the notebook's ``parameters`` cell before the
kernel starts: papermill itself only warns about an unknown name, which
would silently run the wrong experiment.
"""

from __future__ import annotations

import ast
import os
from pathlib import Path
from typing import Any

import nbformat

from ..core.io import atomic_write_text
from .notebook_params import closest_name


def notebook_parameters(path: str | Path) -> dict[str, Any]:
    """Names and default values of the cell tagged ``parameters``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"notebook {str(path)!r} does not exist")
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if "parameters" in cell.get("metadata", {}).get("tags", []):
            params = {}
            for node in ast.parse(cell.source).body:
                if isinstance(node, (ast.Assign, ast.AnnAssign)):
                    targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                    for target in targets:
                        if isinstance(target, ast.Name):
                            params[target.id] = ast.literal_eval(node.value)
            return params
    raise ValueError(f"notebook {str(path)!r} has no cell tagged 'parameters'")


def check_parameters(path: str | Path, parameters: dict[str, Any]) -> None:
    """Unknown names and values of another type than the default are refused, naming the key."""
    defaults = notebook_parameters(path)
    for key, value in parameters.items():
        if key not in defaults:
            guess = closest_name(key, defaults)
            raise ValueError(f"parameter {key!r} is not a parameter of {Path(path).name}; "
                             + (f"did you mean {guess!r}? " if guess else "") + f"allowed {sorted(defaults)}")
        default = defaults[key]
        if default is None or value is None:
            continue
        ok = isinstance(value, type(default)) or (isinstance(default, float) and isinstance(value, int))
        if isinstance(value, bool) != isinstance(default, bool):
            ok = False
        if not ok:
            raise ValueError(f"parameter {key!r}={value!r} has type {type(value).__name__}; "
                             f"{Path(path).name} expects {type(default).__name__} (default {default!r})")


def local_kernel_config() -> Any:
    """Kernel manager settings for a kernel on this machine: its channels over Unix domain sockets (IPC) instead of
    TCP ports on localhost, where the platform has them.

    A local kernel needs no network port, and over TCP ipykernel warns ``Kernel is running over TCP without
    encryption`` on every start (a sweep printed it once per run). The sockets' path prefix is unique per kernel
    (by default it would be ``kernel-ipc`` in the working folder, shared by concurrent kernels) and short (a Unix
    socket path has ~100 bytes); jupyter_client removes the socket files when the kernel shuts down.
    """
    import tempfile
    import uuid

    from traitlets.config import Config

    if os.name != "posix":
        return Config()
    prefix = os.path.join(tempfile.gettempdir(), f"mtlwb-kernel-{uuid.uuid4().hex[:12]}")
    return Config({"KernelManager": {"transport": "ipc", "ip": prefix}})


def execute(notebook: str | Path, output: str | Path, parameters: dict[str, Any] | None = None,
            cwd: str | Path | None = None, progress: bool = True, **papermill_options: Any) -> Path:
    """Run ``notebook`` with ``parameters`` into ``output`` (checked first); extra options go to papermill.

    The kernel's channels are Unix domain sockets (``local_kernel_config``; pass ``config`` to override). It is shut
    down immediately once the last cell has returned (nbclient's ``shutdown_kernel``; pass
    ``shutdown_kernel="graceful"`` to override): every output has arrived by then and the library writes its files
    atomically inside the cells, while a graceful shutdown waits ~1.4 s for a torch-laden interpreter to tear down —
    a quarter of a sweep point's notebook overhead.
    """
    import papermill as pm

    papermill_options.setdefault("shutdown_kernel", "immediate")
    papermill_options.setdefault("config", local_kernel_config())

    parameters = dict(parameters or {})
    check_parameters(notebook, parameters)
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    pm.execute_notebook(str(notebook), str(output), parameters=parameters, cwd=str(cwd or Path.cwd()),
                        progress_bar=progress, kernel_name="python3", **papermill_options)
    return output


# nbconvert's "lab" page without the scripts it loads from a CDN: require.js (nothing in these notebooks needs it;
# loaded, it makes the embedded plotly.js register as an AMD module), MathJax (no LaTeX is rendered) and mermaid
OFFLINE_TEMPLATE = """{%- extends 'index.html.j2' -%}
{%- block html_head_js_requirejs -%}{%- endblock html_head_js_requirejs -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
"""


def export_html(notebook: str | Path, html: str | Path | None = None, hide_code: bool = False) -> Path:
    """Self-contained HTML that renders with no network: plotly's JS is embedded by the notebooks' renderer
    setting (``figures.use_offline_renderer``), and the page loads no script from a CDN (``OFFLINE_TEMPLATE``).

    ``hide_code``: leave out code cells' input and prompts (nbconvert ``--no-input``), for reports a reader
    should take in at a glance.
    """
    import jinja2
    from nbconvert import HTMLExporter

    notebook = Path(notebook)
    html = Path(html) if html else notebook.with_suffix(".html")
    exporter = HTMLExporter(exclude_input=hide_code, exclude_input_prompt=hide_code, exclude_output_prompt=hide_code,
                            extra_loaders=[jinja2.DictLoader({"offline.html.j2": OFFLINE_TEMPLATE})],
                            template_file="offline.html.j2")
    body, _ = exporter.from_notebook_node(nbformat.read(notebook, as_version=4))
    atomic_write_text(html, body)
    return html
