"""The documentation site: it builds strictly and offline, every image is used and renders, and the worked
examples of docs/extending.md run as printed.

The strict build is what fails on a broken link, a missing anchor or a page left out of the navigation
(``mkdocs.yml``: ``strict`` and ``validation``); a test below shows that it does, on a page made broken on purpose.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
EXTENDING = (DOCS / "extending.md").read_text()


def mkdocs_build(config: Path, site: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(config), "-d", str(site)],
                          capture_output=True, text=True, cwd=config.parent, env=env, timeout=300)


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    result = mkdocs_build(ROOT / "mkdocs.yml", out)
    log = result.stdout + result.stderr
    assert result.returncode == 0, log
    assert "WARNING" not in log, log
    return out


class _Assets(HTMLParser):
    """Every URL a page loads by itself (scripts, styles, fonts, icons, images, frames), not the links one clicks."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.images: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag in ("script", "iframe", "source", "embed", "audio", "video") and a.get("src"):
            self.urls.append(a["src"])
        if tag == "img" and a.get("src"):
            self.urls.append(a["src"])
            self.images.append(a["src"])
        if tag == "link" and a.get("href"):
            self.urls.append(a["href"])
        if tag == "object" and a.get("data"):
            self.urls.append(a["data"])


def _remote(url: str) -> bool:
    return bool(re.match(r"^(https?:)?//", url.strip(), re.I))


def _markdown_files() -> list[Path]:
    return sorted(DOCS.rglob("*.md"))


def _python_blocks(markdown: str, heading: str) -> list[str]:
    """The ```python blocks of one ``## heading`` section, in order."""
    section = markdown.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, re.S)


@pytest.mark.slow
def test_site_builds_strictly_and_loads_nothing_from_the_network(site):
    pages = sorted(site.rglob("*.html"))
    assert len(pages) > 20 and (site / "api" / "methods" / "index.html").is_file()
    remote = {}
    for page in pages:
        parser = _Assets()
        parser.feed(page.read_text())
        if bad := [u for u in parser.urls if _remote(u)]:
            remote[str(page.relative_to(site))] = bad
    for css in site.rglob("*.css"):
        if bad := re.findall(r"(?:url\(\s*['\"]?|@import\s+['\"])((?:https?:)?//[^'\")\s]+)", css.read_text()):
            remote[str(css.relative_to(site))] = bad
    assert remote == {}, f"{len(remote)} file(s) would load from the network, e.g. {dict(list(remote.items())[:2])}"


@pytest.mark.slow
def test_the_api_pages_are_rendered_from_the_docstrings(site):
    page = (site / "api" / "methods" / "index.html").read_text()
    assert "mtlwb.methods.base.Method" in page and "The one interface every partial-label method implements" in page


def test_every_image_under_docs_img_is_used_by_a_page_with_a_path_relative_to_it():
    used: dict[str, list[str]] = {}
    for md in _markdown_files():
        for target in re.findall(r"!\[[^\]]*\]\(([^)\s]+)\)", md.read_text()):
            path = (md.parent / target).resolve()
            assert path.is_file(), f"{md.relative_to(ROOT)}: image {target} not found (relative to the page)"
            used.setdefault(path.name, []).append(str(md.relative_to(ROOT)))
    unused = sorted(p.name for p in (DOCS / "img").iterdir() if p.name not in used)
    assert unused == [], f"images no page shows (use or delete them): {unused}"


@pytest.mark.slow
def test_every_image_renders_in_the_built_site(site):
    shown = set()
    for page in site.rglob("*.html"):
        parser = _Assets()
        parser.feed(page.read_text())
        for src in parser.images:
            if _remote(src) or src.startswith("data:"):
                continue
            target = (page.parent / src.split("#")[0]).resolve()
            assert target.is_file(), f"{page.relative_to(site)}: <img src={src!r}> resolves to nothing"
            shown.add(target.name)
    assert {p.name for p in (DOCS / "img").iterdir()} <= shown


@pytest.mark.slow
def test_the_strict_build_fails_on_a_broken_link_a_missing_anchor_and_a_page_out_of_the_nav(tmp_path):
    """The project's own build rules (strict, validation) applied to a small site broken on purpose."""
    ours = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "index.md").write_text("# Home\n\n[gone](missing.md) and [there](other.md#nowhere)\n")
    (docs / "other.md").write_text("# Other\n\n## Somewhere\n")
    (docs / "orphan.md").write_text("# Orphan\n")
    config = {k: ours[k] for k in ("strict", "validation", "theme", "markdown_extensions")}
    config.update(site_name="broken", docs_dir="docs", plugins=["search"], nav=["index.md", "other.md"])
    (tmp_path / "mkdocs.yml").write_text(yaml.safe_dump(config))
    result = mkdocs_build(tmp_path / "mkdocs.yml", tmp_path / "site")
    log = result.stdout + result.stderr
    assert result.returncode != 0, log
    assert "missing.md" in log and "nowhere" in log and "orphan.md" in log, log


def test_every_page_is_in_the_navigation():
    """(The strict build checks it too; this names the page without building.)"""
    nav = yaml.safe_load((ROOT / "mkdocs.yml").read_text())["nav"]

    def pages(item) -> list[str]:
        if isinstance(item, str):
            return [item]
        if isinstance(item, dict):
            return [p for v in item.values() for p in pages(v)]
        return [p for v in item for p in pages(v)]

    listed = set(pages(nav))
    assert all((DOCS / p).is_file() for p in listed), sorted(p for p in listed if not (DOCS / p).is_file())
    assert sorted(str(p.relative_to(DOCS)) for p in _markdown_files() if str(p.relative_to(DOCS)) not in listed) == []


def test_the_new_method_example_trains_and_logs_its_term(tiny_config):
    import mtlwb
    from mtlwb.config import ExperimentConfig
    from mtlwb.methods import METHODS

    (code,) = _python_blocks(EXTENDING, "A new method")
    try:
        exec(compile(code, "docs/extending.md (a new method)", "exec", dont_inherit=True), {"__name__": "docs_example"})
        record = mtlwb.train(tiny_config(method="entropy_min", label_setting="onelabel", epochs=1))
        assert record["status"] == "completed"
        entropy = record["history"][-1]["train"]["entropy"]
        assert np.isfinite(entropy) and entropy > 0
        with pytest.raises(ValueError, match=r"method_options for method='entropy_min': unknown \['weigth'\]"):
            ExperimentConfig(method="entropy_min", method_options={"weigth": 1.0})
    finally:
        METHODS.pop("entropy_min", None)


def test_the_new_task_kind_example_registers_trains_and_scores(monkeypatch):
    import torch

    from mtlwb.objectives.losses import task_loss
    from mtlwb.objectives.metrics import MultiTaskMeter, delta_mtl
    from mtlwb.tasks import kinds

    monkeypatch.setattr(kinds, "_KINDS", dict(kinds._KINDS))           # the example's kind only for this test
    (code,) = _python_blocks(EXTENDING, "A new task kind")
    scope = {"__name__": "docs_example"}
    exec(compile(code, "docs/extending.md (a new task kind)", "exec", dont_inherit=True), scope)
    shading = scope["SHADING"]
    assert shading.kind_object is kinds.get_kind("scalar_map") and not shading.image_level
    target = torch.rand(2, 1, 6, 6)
    target[0, 0, 0, 0] = float("nan")
    pred = torch.zeros(2, 1, 6, 6, requires_grad=True)
    loss = task_loss(shading, pred, target, torch.tensor([1.0, 0.0]))
    assert torch.isfinite(loss) and loss > 0
    loss.backward()
    assert torch.all(pred.grad[1] == 0) and pred.grad[0, 0, 0, 0] == 0       # unlabelled row, undefined pixel
    meter = MultiTaskMeter([shading])
    meter.update({"shading": pred.detach()}, {"shading": target})
    mae = meter.compute()["shading"]["map_mae"]
    assert mae == pytest.approx(float(target[torch.isfinite(target)].double().mean()))
    assert delta_mtl({"shading": {"map_mae": mae / 2}}, {"shading": {"map_mae": mae}}, [shading], "stl") > 0


def _png_dataset(root: Path, n_train: int = 8, n_val: int = 4, size: tuple[int, int] = (24, 32)) -> None:
    """The example's format, written as the example describes it: RGB PNG, 8-bit classes (255 = ignore),
    16-bit depth in millimetres (0 = no measurement)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("val", n_val)):
        for folder in ("rgb", "seg", "depth"):
            (root / split / folder).mkdir(parents=True)
        for i in range(n):
            name = f"img{i:03d}.png"
            Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(root / split / "rgb" / name)
            seg = rng.integers(0, 5, size, dtype=np.uint8)
            seg[:2] = 255
            Image.fromarray(seg).save(root / split / "seg" / name)
            depth = rng.integers(500, 5000, size).astype(np.uint16)
            depth[-2:] = 0
            Image.fromarray(depth).save(root / split / "depth" / name)


def test_the_new_dataset_example_reads_its_format_and_trains(tmp_path, monkeypatch):
    import mtlwb
    from mtlwb.config import ExperimentConfig
    from mtlwb.data import registry

    reader, entry = _python_blocks(EXTENDING, "A new dataset")
    monkeypatch.setitem(registry.REGISTRY, "pngfolder", None)          # removed again after the test
    namespace: dict = {"__name__": "docs_example"}
    exec(compile(reader, "docs/extending.md (reader)", "exec", dont_inherit=True), namespace)
    exec(compile(entry, "docs/extending.md (registry entry)", "exec", dont_inherit=True), namespace)
    root = tmp_path / "mine"
    _png_dataset(root)

    request = SimpleNamespace(dataset="pngfolder", data_root=str(root), tasks=["semantic", "depth"],
                              label_setting="onelabel", mask_seed=0, train_samples=None, eval_samples=None)
    tasks, train_set, _, table = registry.build(request)
    item = train_set[0]
    assert item["image"].shape == (3, 24, 32) and 0 <= item["image"].min() and item["image"].max() <= 1
    assert item["semantic"].dtype.is_floating_point is False and (item["semantic"][:2] == -1).all()
    assert item["semantic"].max() <= 4
    assert item["depth"].shape == (1, 24, 32) and (item["depth"][0, -2:] == 0).all()
    assert 0.5 <= float(item["depth"][item["depth"] > 0].min()) and float(item["depth"].max()) < 5.0
    assert table.shape == (8, 2) and (table.sum(axis=1) == 1).all()

    config = ExperimentConfig(dataset="pngfolder", data_root=str(root), tasks=["semantic", "depth"], epochs=1,
                              batch_size=4, run_dir=str(tmp_path / "run"), progress=False, device="cpu")
    record = mtlwb.train(config)
    assert record["status"] == "completed"
    assert np.isfinite(record["final"]["semantic"]["miou"]) and np.isfinite(record["final"]["depth"]["abs_err"])

    (root / "val" / "depth" / "img002.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"depth: 1 file\(s\) missing in .*val/depth, e.g. img002.png"):
        registry.build(request)
