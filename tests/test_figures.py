"""Exploration figures on tiny trained runs: shapes, invariants, t-SNE caching, export fallbacks."""

from __future__ import annotations

import json

import numpy as np
import plotly.graph_objects as go
import pytest
import torch

import mtlwb
from mtlwb.data import MultiTaskFolder, make_mask
from mtlwb.figures import affinity, dataset, export, gradients, latent, predictions
from mtlwb.methods import forward_step
from mtlwb.tasks import make_tasks

TASKS = ["semantic", "depth", "normal"]


def _train(tiny_root, run_dir, method: str, snapshots: bool = False) -> str:
    cfg = mtlwb.ExperimentConfig(data_root=str(tiny_root), method=method, epochs=2 if snapshots else 1, lr_step=1,
                                 batch_size=8, train_samples=16, eval_samples=8, run_dir=str(run_dir),
                                 progress=False, device="cpu")
    latent.train_with_snapshots(cfg) if snapshots else mtlwb.train(cfg)
    return str(run_dir)


@pytest.fixture(scope="module")
def tpkr_run(tiny_root, tmp_path_factory):
    return _train(tiny_root, tmp_path_factory.mktemp("tpkr"), "tpkr")


@pytest.fixture(scope="module")
def jtr_run(tiny_root, tmp_path_factory):
    return _train(tiny_root, tmp_path_factory.mktemp("jtr"), "jtr", snapshots=True)


# -- dataset ------------------------------------------------------------------------------------------------------

def test_dataset_figures(tiny_root):
    specs = make_tasks(TASKS, 7)
    ds = MultiTaskFolder(tiny_root, "train", specs)
    table = make_mask("onelabel", len(ds), TASKS)
    grid = dataset.sample_grid(ds, specs, [0, 1], table, setting="onelabel")
    assert isinstance(grid, go.Figure) and len(grid.data) == 2 * (1 + len(TASKS))
    titles = [a.text for a in grid.layout.annotations]
    assert sum("unlabelled" in t for t in titles) == 2 * (len(TASKS) - 1)      # onelabel: one task kept per image
    assert len(dataset.sample_grid(ds, specs, [0], show=["depth"]).data) == 2
    hist = dataset.class_histogram(ds, [f"c{k}" for k in range(7)], progress=False)
    pixels = np.asarray(hist.data[0].y)
    assert len(hist.data) == 2 and abs(pixels.sum() - 1) < 1e-6
    counts = dataset.label_count_table(len(ds), TASKS, ["full", "onelabel", "ratio:semantic=0.25"])
    assert counts.loc["full", TASKS].tolist() == [24, 24, 24]
    assert counts.loc["onelabel", TASKS].tolist() == [8, 8, 8]
    assert counts.loc["ratio:semantic=0.25", "semantic"] == 6
    assert len(dataset.label_count_figure(counts, TASKS).data) == len(TASKS)
    box = dataset.sample_browser(ds, specs, table, "onelabel")
    assert box.children[0].children[0].max == len(ds) - 1


def _titles_clear_the_row_above(fig: go.Figure) -> None:
    """Every subplot title (one 11 px line per ``<br>``-separated line) fits in the band above its panel: it ends
    below the bottom of the panel above it (or of the figure title, for the first row)."""
    plot_height = fig.layout.height - fig.layout.margin.t - fig.layout.margin.b
    bottoms = sorted({round(fig.get_subplot(r + 1, 1).yaxis.domain[0], 9) for r in range(len(fig._grid_ref))})
    for a in fig.layout.annotations:
        top_px = a.y * plot_height + (a.text.count("<br>") + 1) * dataset.TITLE_LINE_PX
        above = [b for b in bottoms if b > a.y + 1e-9]
        limit_px = min(above) * plot_height if above else plot_height + fig.layout.margin.t - 35   # figure title
        assert a.yanchor == "bottom" and top_px <= limit_px + 0.5, (a.text, top_px, limit_px)


def test_dataset_explorer_titles_do_not_overlap_the_images(tiny_root):
    from mtlwb.data.generate import scene_seed
    from mtlwb.data.scenes import render_scene

    names = [*TASKS, "dominant_class", "num_objects"]                  # two lines of image-level labels per title
    specs = make_tasks(names, 7)
    ds = MultiTaskFolder(tiny_root, "train", specs)
    grid = dataset.sample_grid(ds, specs, [0, 1, 2], make_mask("onelabel", len(ds), names), setting="onelabel")
    assert grid.layout.annotations[0].text.count("<br>") == 2
    _titles_clear_the_row_above(grid)
    _titles_clear_the_row_above(dataset.sample_grid(ds, specs, [0, 1, 2, 3], show=["depth"]))
    seeds = [scene_seed(0, "train", i) for i in (0, 1, 2)]
    styled = {look: [render_scene(s, 32, 40, style=look)["image"] for s in seeds] for look in ("default", "B")}
    styles = dataset.style_comparison(styled, [0, 1, 2])
    assert [a.text for a in styles.layout.annotations][:2] == ["default · scene 0", "default · scene 1"]
    assert len(styles.data) == 6 and len(styles._grid_ref) == 2
    _titles_clear_the_row_above(styles)


# -- predictions --------------------------------------------------------------------------------------------------

def test_prediction_grid_is_four_columns_one_row_per_image_and_task(tiny_config):
    """Four columns whatever the number of tasks (the old 1 + 3·T columns overflowed the page at T = 3)."""
    exp = mtlwb.build_experiment(tiny_config(tasks=["semantic", "depth", "normal", "edge"]))
    indices = [0, 2]
    fig = predictions.prediction_grid(exp.model, exp.method, exp.eval_set, exp.tasks, indices)
    grid = fig._validate_get_grid_ref()
    assert len(grid) == len(indices) * len(exp.tasks) and all(len(row) == 4 for row in grid)
    assert fig.layout.width <= 900
    titles = [a.text for a in fig.layout.annotations]
    assert titles[:4] == ["image 0", "semantic ground truth", "semantic prediction", "semantic error (wrong class)"]
    assert titles[-4:-1] == ["image 2", "edge ground truth", "edge prediction"]
    assert len(fig.data) == 4 * len(grid)
    # row 1·4 + 1 (0-based: second image, depth): its error panel is that image's depth error, flipped for the
    # heatmap's upward y axis
    exp.model.eval()
    exp.method.eval()
    item = exp.eval_set[2]
    with torch.no_grad():
        _, _, preds, _ = forward_step(exp.model, exp.method, item["image"][None])
    depth = exp.tasks[1]
    expected = predictions.error_map(depth, preds["depth"][0], item["depth"])[::-1]
    np.testing.assert_allclose(np.asarray(fig.data[4 * 5 + 3].z), expected, rtol=1e-5, atol=1e-6)


def test_prediction_grid_errors_have_one_colour_range_per_task_and_a_colour_bar(tiny_config):
    """Every error panel of a task shares that task's range (a panel scaled to its own maximum paints "wrong class"
    in another colour per row), and each carries a colour bar beside it, inside the figure."""
    exp = mtlwb.build_experiment(tiny_config(tasks=["semantic", "depth", "normal", "edge"]))
    fig = predictions.prediction_grid(exp.model, exp.method, exp.eval_set, exp.tasks, [0, 1, 2])
    errors = [d for d in fig.data if d.type == "heatmap"]
    assert len(errors) == 3 * 4
    by_task = {}
    for d in errors:
        by_task.setdefault(d.name, []).append(d)
    assert sorted(by_task) == ["depth error", "edge error", "normal error", "semantic error"]
    for name, panels in by_task.items():
        assert all(d.zauto is False and d.zmin == 0 for d in panels), name
        assert len({(d.zmin, d.zmax, json.dumps(d.colorscale)) for d in panels}) == 1, name   # one range per task
        if name in ("semantic error", "edge error"):                  # bounded: every value inside the range
            assert all(np.asarray(d.z).max() <= d.zmax == 1 for d in panels)
    assert by_task["semantic error"][0].zmax == 1 and by_task["normal error"][0].zmax == 90
    # "wrong class" (z = 1) has one colour, whatever a panel holds
    scale = by_task["semantic error"][0].colorscale
    assert [c for v, c in scale if v > 0.5] == ["crimson"] and "wrong" in by_task["semantic error"][0].colorbar.ticktext
    depth = by_task["depth error"][0].zmax
    pooled = np.concatenate([np.asarray(d.z).ravel() for d in by_task["depth error"]])   # every image's depth error
    assert np.isclose(depth, np.percentile(pooled, 99), rtol=1e-5)
    # a colour bar beside each error panel: right of the last column, within its row, inside the figure's margin
    plot_width = fig.layout.width - fig.layout.margin.l - fig.layout.margin.r
    for d, row in zip(errors, range(1, len(errors) + 1)):
        panel = fig.get_subplot(row, 4)
        bar = d.colorbar
        assert d.showscale and bar.x >= panel.xaxis.domain[1] and bar.xanchor == "left"
        low, high = bar.y - bar.len / 2, bar.y + bar.len / 2
        assert panel.yaxis.domain[0] - 1e-6 <= low and high <= panel.yaxis.domain[1] + 1e-6
        bar_px = (bar.x - 1) * plot_width + bar.thickness + 35          # bar, ticks and a short label
        assert bar_px <= fig.layout.margin.r, (bar_px, fig.layout.margin.r)


# -- task affinity ------------------------------------------------------------------------------------------------

def test_affinity_figures(tpkr_run):
    record = mtlwb.load_record(tpkr_run)
    heat = affinity.record_affinity_heatmap(record)
    z = np.asarray(heat.data[0].z, dtype=float)
    assert z.shape == (3, 3) and np.allclose(z.sum(1), 1, atol=1e-5)
    evo = affinity.affinity_evolution(record)
    assert len(evo.frames) == len(record["history"]) and evo.layout.sliders
    assert len(affinity.affinity_trajectories(record).data) == 9          # slot × task facet
    exp = mtlwb.load_experiment(tpkr_run, device="cpu")
    names = [t.name for t in exp.tasks]
    sim = np.asarray(affinity.prototype_similarity(exp.method.prototype_slots(), names).data[0].z, dtype=float)
    assert np.allclose(np.diag(sim), 1, atol=1e-5) and np.allclose(sim, sim.T, atol=1e-6)
    keys, key_tasks = affinity.task_keys(exp, [0, 1])
    proj = affinity.prototype_projection(exp.method.prototype_slots(), names, keys, key_tasks)
    assert len(proj.data) == 1 + len(names) and len(proj.data[-1].x) == len(names)
    image, a = affinity.image_affinity(exp, 0)
    assert image.dtype == np.uint8 and a.shape == (3, 3) and np.allclose(a.sum(1), 1, atol=1e-5)
    assert len(affinity.image_affinity_figure(exp, 1).data) == 2
    recomputed = affinity.mean_affinity(exp)
    assert np.allclose(recomputed, record["history"][-1]["summaries"]["affinity"], atol=1e-4)


def test_affinity_needs_tpkr():
    with pytest.raises(ValueError, match="tpkr"):
        affinity.record_affinities({"run_id": "x", "config": {"method": "supervised"},
                                    "history": [{"epoch": 1, "summaries": {}}]})


def test_gradient_affinity_any_method(tpkr_run, jtr_run):
    for run in (tpkr_run, jtr_run):
        exp = mtlwb.load_experiment(run, device="cpu")
        before = {k: v.clone() for k, v in exp.model.state_dict().items()}
        g = gradients.gradient_affinity(exp, batches=1, batch_size=4, progress=False)
        assert g.shape == (3, 3) and np.allclose(np.diag(g), 1) and np.allclose(g, g.T)
        assert (g >= -1).all() and (g <= 1).all()
        assert all(np.array_equal(before[k], v) for k, v in exp.model.state_dict().items())   # no update
    fig = affinity.affinity_comparison(np.eye(3), g, ["a", "b", "c"])
    assert len(fig.data) == 2
    assert gradients.gradient_affinity_heatmap(g, ["a", "b", "c"]).layout.coloraxis.cmin == -1


def test_prior_beside_the_learned_affinities():
    from mtlwb.tasks.priors import parse_task_prior

    names = ["a", "b", "c"]
    prior = parse_task_prior({"b-c": 1.0, "a-b": 0.3}, names)
    heat = affinity.prior_heatmap(prior, names)
    assert np.allclose(np.asarray(heat.data[0].z, dtype=float), prior.numpy())
    grad = np.array([[1.0, -0.5, 0.2], [-0.5, 1.0, 0.1], [0.2, 0.1, 1.0]])
    fig = affinity.task_relations(names, prior=prior, prototype=np.full((3, 3), 1 / 3), gradient=grad)
    assert [tr.name for tr in fig.data] == ["prior", "prototype", "gradient"]
    assert np.allclose(np.asarray(fig.data[0].z, dtype=float), prior.numpy())
    assert np.allclose(np.asarray(fig.data[2].z, dtype=float), grad) and fig.data[2].zmin == -1
    assert [a.text for a in fig.layout.annotations][0].startswith("prior")
    assert [tr.name for tr in affinity.task_relations(names, prior=prior, gradient=grad).data] == ["prior",
                                                                                                  "gradient"]
    with pytest.raises(ValueError, match=r"prototype has shape \(2, 2\), expected \(3, 3\)"):
        affinity.task_relations(names, prototype=np.eye(2))
    with pytest.raises(ValueError, match="at least one"):
        affinity.task_relations(names)


# what fits a JupyterLab notebook with the file browser open at a 1400 px wide window (tests/test_browser.py checks
# the rendered task-affinity notebook itself)
NOTEBOOK_WIDTH_PX = 900


def _colorbars_stay_under_their_panels(fig: go.Figure) -> None:
    """Each heatmap's colour bar lies flat under its own panel (x inside that panel's domain, below its axis, inside
    the bottom margin): its tick labels cannot run into the next panel's labels."""
    plot_height = fig.layout.height - fig.layout.margin.t - fig.layout.margin.b
    for col, trace in enumerate(fig.data, 1):
        domain = fig.get_subplot(1, col).xaxis.domain
        bar = trace.colorbar
        assert bar.orientation == "h" and bar.xanchor == "center" and bar.yanchor == "top", trace.name
        assert domain[0] <= bar.x - bar.len / 2 and bar.x + bar.len / 2 <= domain[1], (trace.name, domain, bar.x)
        below_px = -bar.y * plot_height                                   # the bar's top, under the axis
        assert 25 <= below_px and below_px + bar.thickness + 20 <= fig.layout.margin.b, (trace.name, below_px)


def test_side_by_side_affinities_fit_the_notebook_and_their_colour_bars_do_not_overlap():
    names = ["semantic", "depth", "normal"]
    grad = np.array([[1.0, -0.5, 0.2], [-0.5, 1.0, 0.1], [0.2, 0.1, 1.0]])
    three = affinity.task_relations(names, prior=np.eye(3), prototype=np.full((3, 3), 1 / 3), gradient=grad)
    two = affinity.affinity_comparison(np.full((3, 3), 1 / 3), grad, names)
    for fig in (three, two):
        assert fig.layout.width <= NOTEBOOK_WIDTH_PX
        _colorbars_stay_under_their_panels(fig)
    assert len(two.data) == 2 and two.layout.title.text == "Two task affinities side by side"
    assert three.data[1].text[0] == ["0.33", "0.33", "0.33"] and three.data[2].text[0] == ["1.00", "-0.50", "0.20"]


def test_per_image_affinity_cells_are_rounded(tpkr_run):
    exp = mtlwb.load_experiment(tpkr_run, device="cpu")
    heat = affinity.image_affinity_figure(exp, 0).data[1]
    _, a = affinity.image_affinity(exp, 0)
    assert a.dtype == np.float32                        # what printed 0.7200000286102295 through np.round
    texts = [t for row in heat.text for t in row]
    assert len(texts) == a.size and all(isinstance(t, str) and len(t) == 4 and t[1] == "." for t in texts), texts
    assert [float(t) for t in texts] == [round(float(v), 2) for v in a.ravel()]
    evo = affinity.affinity_evolution(mtlwb.load_record(tpkr_run))
    assert all(isinstance(t, str) and len(t) == 4 for frame in evo.frames for row in frame.data[0].text for t in row)


# -- latent spaces ------------------------------------------------------------------------------------------------

def test_tsne_cache_hit_skips_recompute(tmp_path, monkeypatch):
    import sklearn.manifold

    calls = []
    real = sklearn.manifold.TSNE

    class Counting(real):
        def fit_transform(self, x, y=None):
            calls.append(len(x))
            return super().fit_transform(x)

    monkeypatch.setattr(sklearn.manifold, "TSNE", Counting)
    x = np.random.default_rng(0).normal(size=(20, 5)).astype(np.float32)
    first = latent.cached_tsne(x, tmp_path, "t", perplexity=5)
    second = latent.cached_tsne(x, tmp_path, "t", perplexity=5)
    assert calls == [20] and np.array_equal(first, second) and first.shape == (20, 2)
    latent.cached_tsne(x + 1, tmp_path, "t", perplexity=5)                 # other inputs: another key
    assert len(calls) == 2 and len(list(tmp_path.glob("t-*.npz"))) == 2


def test_joint_latent_figures(jtr_run):
    exp = mtlwb.load_experiment(jtr_run, device="cpu")
    x, meta = latent.collect_joint_codes(exp, n_images=8)
    assert x.shape[0] == 16 == len(meta) and set(meta.source) == {"prediction", "mixed target"}
    x2, _ = latent.collect_joint_codes(exp, n_images=8)
    assert np.array_equal(x, x2)                                            # seeded Gumbel noise: cache-stable
    xp, mp = latent.collect_joint_codes(exp, n_images=4, pool="positions", positions=3)
    assert xp.shape[0] == 2 * 4 * 3 and (mp["dominant class"] >= -1).all()
    fig = latent.joint_latent_figure(exp, jtr_run, "labelled", n_images=8, perplexity=3)
    assert isinstance(fig, go.Figure) and sum(len(t.x) for t in fig.data) == 16
    assert list(latent.snapshot_paths(jtr_run)) == [1, 2]
    by_epoch = latent.joint_latent_over_epochs(exp, jtr_run, n_images=4, perplexity=3)
    assert by_epoch is not None and sum(len(t.x) for t in by_epoch.data) == 2 * 2 * 4
    assert list((exp.config.resolved_run_dir / "tsne").glob("*.npz"))


def test_task_features_of_a_method_without_per_task_features_say_so(jtr_run, tpkr_run):
    """JTR's heads all read the shared feature: its "per-task" t-SNE would embed T copies of each point (the notebook
    showed 2 blobs); the figure shows each image once and says why. TPKR refines per task: T points per image."""
    jtr = mtlwb.load_experiment(jtr_run, device="cpu")
    x, meta = latent.collect_task_features(jtr, n_images=6)
    assert x.shape[0] == 6 * len(TASKS) and latent.shared_by_all_tasks(x, meta)
    feats = latent.task_feature_figure(jtr, jtr_run, n_images=6, perplexity=3)
    assert [t.name for t in feats.data] == ["all tasks (one shared feature)"] and len(feats.data[0].x) == 6
    assert "every task reads the same shared feature" in feats.layout.title.text
    tpkr = mtlwb.load_experiment(tpkr_run, device="cpu")
    assert not latent.shared_by_all_tasks(*latent.collect_task_features(tpkr, n_images=6))
    feats = latent.task_feature_figure(tpkr, tpkr_run, n_images=6, perplexity=3)
    assert {t.name for t in feats.data} == set(TASKS) and sum(len(t.x) for t in feats.data) == 6 * len(TASKS)
    assert "shared" not in feats.layout.title.text


def test_joint_latent_needs_joint_codes(tpkr_run):
    exp = mtlwb.load_experiment(tpkr_run, device="cpu")
    with pytest.raises(ValueError, match="joint_codes"):
        latent.collect_joint_codes(exp, n_images=2)
    assert latent.snapshot_paths(tpkr_run) == {}


# -- export -------------------------------------------------------------------------------------------------------

def test_html_export_embeds_plotlyjs(tmp_path):
    fig = affinity.affinity_heatmap(np.eye(2), ["a", "b"])
    out = export.export_figure(fig, tmp_path, "heat", png=False)
    html = out["html"].read_text()
    assert "plotly.js v" in html or "Plotly" in html
    assert len(html) > 1_000_000 and '"type":"heatmap"' in html.replace(" ", "")      # the library itself + data
    assert out["png"] is None


def test_png_export_falls_back_without_browser(tmp_path, monkeypatch):
    monkeypatch.setattr(export, "find_browser", lambda: None)
    fig = affinity.affinity_heatmap(np.eye(2), ["a", "b"])
    with pytest.warns(export.PNGExportUnavailable, match="no browser|none was found"):
        out = export.export_figure(fig, tmp_path, "heat")
    assert out["png"] is None and out["html"].is_file() and not (tmp_path / "heat.png").exists()


def test_png_export_with_system_browser(tmp_path):
    if export.find_browser() is None:
        pytest.skip("no system Chromium/Chrome (install: apt-get install -y chromium)")
    png = export.write_png(affinity.affinity_heatmap(np.eye(2), ["a", "b"]), tmp_path / "h.png")
    assert png is not None and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_png_export_retries_a_failed_render_once(tmp_path, monkeypatch):
    """A render that fails once (kaleido under load) is retried; two failures give a warning and no file."""
    monkeypatch.setattr(export, "find_browser", lambda: "/usr/bin/chromium")
    fig = affinity.affinity_heatmap(np.eye(2), ["a", "b"])
    calls = []

    def flaky(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("ReferenceError: kaleido_scopes is not defined")
        return b"\x89PNG\r\n\x1a\nfake"

    monkeypatch.setattr(type(fig), "to_image", flaky)
    assert export.write_png(fig, tmp_path / "h.png").read_bytes().startswith(b"\x89PNG")
    assert len(calls) == 2

    def broken(*args, **kwargs):
        raise RuntimeError("no render")

    monkeypatch.setattr(type(fig), "to_image", broken)
    with pytest.warns(export.PNGExportUnavailable, match="failed twice"):
        assert export.write_png(fig, tmp_path / "g.png") is None
    assert not (tmp_path / "g.png").exists()
