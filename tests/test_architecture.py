"""The package's import graph: layered (a module imports only from its own layer or lower ones) and without
import circles. The layer order is written once, here, and described in docs/extending.md ("Layers").

Every ``import`` / ``from ... import`` of every module under mtlwb/ counts, wherever it stands: inside a function
(a deferred import is still an arrow) and under ``if TYPE_CHECKING:`` (a type annotation is still a dependency).
"""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "mtlwb"

# lowest first; a name is a sub-package or a top-level module of mtlwb ("__init__" is the package's own face)
LAYERS: tuple[tuple[str, ...], ...] = (
    ("core",),                       # atomic io, seeding and devices, tensor ops, distributed helpers
    ("tasks",),                      # task specs and kinds, task-relation priors
    ("data",),                       # datasets, label tables, sources, augmentation: reads a DataRequest
    ("models",),                     # backbones, heads, MultiTaskNet
    ("objectives",),                 # losses, metrics, loss weighting
    ("methods",),                    # one file per method (+ its reference network beside it)
    ("config", "identity"),          # ExperimentConfig (builds the DataRequest) and the run identity
    ("experiment",),                 # building an experiment, the loop and its hooks, records, selection
    ("analysis",),                   # records into tables, statistics, claims, summaries
    ("sweeps",),                     # spec, planning, state, executors, notebooks, the report
    ("figures",),                    # every figure; reads tables and experiments, trains through loop hooks
    ("cli", "__init__"),             # the command line and the package's public names
)


def modules(package: Path) -> dict[str, tuple[Path, bool]]:
    """Dotted name -> (file, is a package) for every module under ``package``."""
    found = {}
    for path in sorted(package.rglob("*.py")):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        found[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return found


def imports(package: Path) -> dict[str, set[str]]:
    """Module -> the package's modules it imports (``from a import b`` means a.b when b is a module, else a)."""
    known = modules(package)
    root = package.name

    def nearest(name: str) -> str:
        while name not in known and "." in name:
            name = name.rsplit(".", 1)[0]
        return name

    graph: dict[str, set[str]] = {}
    for name, (path, is_package) in known.items():
        targets = graph.setdefault(name, set())
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets.update(nearest(a.name) for a in node.names if a.name.split(".")[0] == root)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = name.split(".") if is_package else name.split(".")[:-1]
                    base = base[:len(base) - node.level + 1]
                    source = ".".join(base + ([node.module] if node.module else []))
                else:
                    source = node.module or ""
                if source.split(".")[0] != root:
                    continue
                targets.update(nearest(f"{source}.{a.name}") if f"{source}.{a.name}" in known else nearest(source)
                               for a in node.names)
        targets.discard(name)
    return graph


def layer_of(module: str, layers: tuple[tuple[str, ...], ...] = LAYERS) -> int:
    parts = module.split(".")
    key = parts[1] if len(parts) > 1 else "__init__"
    for i, names in enumerate(layers):
        if key in names:
            return i
    raise KeyError(f"{module}: in no layer; add {key!r} to LAYERS in tests/test_architecture.py "
                   "(and docs/extending.md)")


def upward_imports(graph: dict[str, set[str]], layers=LAYERS) -> list[str]:
    return [f"{a} (layer {'/'.join(layers[layer_of(a, layers)])}) imports {b} (layer "
            f"{'/'.join(layers[layer_of(b, layers)])})"
            for a, targets in sorted(graph.items()) for b in sorted(targets)
            if layer_of(b, layers) > layer_of(a, layers)]


def circle(graph: dict[str, set[str]]) -> list[str]:
    """One import circle (its modules, first repeated last), or [] when the graph has none."""
    try:
        tuple(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as e:
        return list(reversed(e.args[1]))
    return []


def test_every_module_is_in_a_layer():
    unplaced = []
    for name in imports(PACKAGE):
        try:
            layer_of(name)
        except KeyError as e:
            unplaced.append(str(e))
    assert not unplaced, "\n".join(unplaced)


def test_no_module_imports_from_a_higher_layer():
    up = upward_imports(imports(PACKAGE))
    assert not up, "imports against the layer order (move the code to its layer, or pass a hook):\n" + "\n".join(up)


def test_no_import_circle():
    found = circle(imports(PACKAGE))
    assert not found, "import circle: " + " -> ".join(found)


def test_the_layers_name_every_sub_package_once():
    names = [n for layer in LAYERS for n in layer]
    assert len(names) == len(set(names))
    tops = {p.stem if p.is_file() else p.name for p in PACKAGE.iterdir()
            if (p.is_dir() and (p / "__init__.py").is_file()) or p.suffix == ".py"}
    assert tops == set(names)


@pytest.fixture
def toy(tmp_path):
    """A small package with a deferred upward import, a TYPE_CHECKING import and a circle."""
    pkg = tmp_path / "toy"
    for folder, files in {"low": {"__init__.py": "", "a.py": "def f():\n    from ..high import b\n"},
                          "high": {"__init__.py": "from . import b\n",
                                   "b.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                                           "    from .c import C\nfrom ..low.a import f\n",
                                   "c.py": "from . import b\n"}}.items():
        (pkg / folder).mkdir(parents=True)
        for name, text in files.items():
            (pkg / folder / name).write_text(text)
    (pkg / "__init__.py").write_text("")
    return pkg


def test_the_checks_see_deferred_and_type_checking_imports_and_circles(toy):
    graph = imports(toy)
    assert graph["toy.low.a"] == {"toy.high.b"} and graph["toy.high"] == {"toy.high.b"}
    assert graph["toy.high.b"] == {"toy.high.c", "toy.low.a"}
    layers = (("low",), ("high",), ("__init__",))
    assert upward_imports(graph, layers) == ["toy.low.a (layer low) imports toy.high.b (layer high)"]
    found = circle(graph)
    assert found[0] == found[-1] and set(found) in ({"toy.high.b", "toy.high.c"}, {"toy.low.a", "toy.high.b"})
    with pytest.raises(KeyError, match="in no layer"):
        layer_of("toy.middle.x", layers)


def test_the_docs_describe_the_same_layers():
    """docs/extending.md ("Where things are") shows the order to readers: the same layers, in the same order."""
    import re

    page = (PACKAGE.parent / "docs" / "extending.md").read_text()
    rows = re.findall(r"^\| (\d+) \| (.+?) \|", page, flags=re.M)
    shown = [tuple(re.findall(r"`mtlwb/(\w+)(?:/|\.py)`", cells)) for _, cells in rows]
    expected = [tuple(n for n in layer) for layer in LAYERS]
    assert [int(n) for n, _ in rows] == list(range(len(LAYERS)))
    assert shown == expected
