"""Sweep aggregation on hand-made records (no training): mean ± std over seeds, Δ_MTL pairing, paired
statistics over seeds, model selection, outputs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest

from mtlwb.analysis import summary, tables
from mtlwb.sweeps.report import REPORT_NOTEBOOK, render_report
from tests.helpers.sweep_records import TASKS, write_paired

# (method, label_setting, seed, miou, abs_err)
RUNS = [("supervised", "onelabel", 0, 0.40, 1.0), ("supervised", "onelabel", 1, 0.50, 1.2),
        ("tpkr", "onelabel", 0, 0.50, 0.9), ("tpkr", "onelabel", 1, 0.60, 1.1),
        ("supervised", "randomlabel", 0, 0.60, 1.0), ("tpkr", "randomlabel", 0, 0.66, 0.8)]


def _write_sweep(root: Path) -> Path:
    runs = {}
    for i, (method, setting, seed, miou, abs_err) in enumerate(RUNS):
        rid = f"r{i}"
        params = {"method": method, "label_setting": setting, "seed": seed, "epochs": 2}
        runs[rid] = {"params": params, "status": "completed", "error": None, "notebook": f"{rid}/train.ipynb"}
        (root / rid).mkdir(parents=True)
        record = {"run_id": rid, "status": "completed", "config": params, "tasks": TASKS,
                  "final": {"semantic": {"miou": miou, "pixel_acc": 0.9}, "depth": {"abs_err": abs_err}}}
        (root / rid / "metrics.json").write_text(json.dumps(record))
    runs["bad"] = {"params": {"method": "tpkr", "label_setting": "onelabel", "seed": 2, "epochs": 2},
                   "status": "failed", "error": "ValueError: boom", "notebook": "bad/train.ipynb"}
    state = {"name": "hand", "baseline": {"method": "supervised"}, "runs": runs}
    (root / "state.json").write_text(json.dumps(state))
    return root


@pytest.fixture
def table(tmp_path: Path) -> tables.SweepTable:
    return tables.load_table(_write_sweep(tmp_path / "hand"))


def _row(table: tables.SweepTable, method: str, setting: str) -> pd.Series:
    s = table.summary
    return s[(s["method"] == method) & (s["label_setting"] == setting)].iloc[0]


def test_mean_std_over_seeds(table):
    row = _row(table, "supervised", "onelabel")
    assert row["n_seeds"] == 2
    assert row["semantic/miou mean"] == pytest.approx(0.45)
    assert row["semantic/miou std"] == pytest.approx(math.sqrt(0.005))   # sample std of (0.4, 0.5)
    assert row["depth/abs_err mean"] == pytest.approx(1.1)
    assert row["depth/abs_err std"] == pytest.approx(math.sqrt(0.02))
    assert math.isnan(_row(table, "tpkr", "randomlabel")["semantic/miou std"])  # one seed: no std
    assert len(table.summary) == 4 and set(table.varying) == {"method", "label_setting"}


def test_delta_vs_baseline_with_same_label_setting(table):
    col = table.delta_column
    assert col == "Δ_MTL vs method=supervised (%)"
    # onelabel: ((0.55 - 0.45) / 0.45 - (1.0 - 1.1) / 1.1) / 2 * 100
    assert _row(table, "tpkr", "onelabel")[col] == pytest.approx((0.1 / 0.45 + 0.1 / 1.1) / 2 * 100)
    # randomlabel is compared with the randomlabel baseline: ((0.66 - 0.6) / 0.6 + (1.0 - 0.8) / 1.0) / 2 * 100
    assert _row(table, "tpkr", "randomlabel")[col] == pytest.approx(15.0)
    assert _row(table, "supervised", "randomlabel")[col] == pytest.approx(0.0)
    assert any("label_setting" in note for note in table.notes)


def test_failed_runs_are_listed_not_averaged(table):
    assert list(table.failures["run_id"]) == ["bad"]
    assert _row(table, "tpkr", "onelabel")["n_seeds"] == 2


def test_write_summary_files(tmp_path):
    sweep = _write_sweep(tmp_path / "hand")
    md = summary.write_summary(sweep).read_text()
    csv = pd.read_csv(sweep / "summary.csv")
    assert "Δ_MTL vs method=supervised (%)" in csv.columns and "semantic/pixel_acc mean" in csv.columns
    assert "method=supervised" in md and "0.45 ± 0.071" in md and "+15.00" in md
    assert "`bad` (failed): ValueError: boom" in md


def test_figures(table):
    from mtlwb.figures.sweep_metrics import bar_chart, radar_chart

    bar = bar_chart(table, "depth")
    bars = {x: y for trace in bar.data if trace.type == "bar" for x, y in zip(trace.x, trace.y)}
    assert bars["tpkr · label_setting=onelabel"] == pytest.approx(1.0)
    assert bars["supervised · label_setting=onelabel"] == pytest.approx(1.1)
    radar = radar_chart(table)
    assert len(radar.data) == 4
    tpkr_one = next(t for t in radar.data if t.name == "tpkr · label_setting=onelabel")
    assert list(tpkr_one.r)[:2] == pytest.approx([0.1 / 0.45 * 100, 0.1 / 1.1 * 100])
    with pytest.raises(ValueError, match="edge"):
        bar_chart(table, "edge")
    seeds = next(t for t in bar.data if t.name == "per seed")             # one point per completed run
    assert sorted(zip(seeds.x, seeds.y)) == sorted(
        (f"{m} · label_setting={s}", a) for m, s, _, _, a in RUNS)


# --- paired statistics and model selection ----------------------------------------------------------
T2 = 4.302653       # t_{0.975, 2}

def test_paired_statistics_by_seed(tmp_path):
    table = tables.load_table(write_paired(tmp_path / "p"))
    jtr = table.summary[table.summary["method"] == "jtr"].iloc[0]
    assert jtr["n_seeds"] == 4 and jtr["n_pairs"] == 3              # seed 4 has no supervised partner
    # per-seed Δ_MTL: (semantic %, depth %) = (1, 2), (2, 2.5), (6, 3) -> 1.5, 2.25, 4.5
    d = [1.5, 2.25, 4.5]
    sd = math.sqrt(sum((x - 2.75) ** 2 for x in d) / 2)
    assert jtr["Δ_MTL paired mean"] == pytest.approx(2.75)
    assert jtr["Δ_MTL paired ci_low"] == pytest.approx(2.75 - T2 * sd / math.sqrt(3), abs=1e-5)
    assert jtr["Δ_MTL paired ci_high"] == pytest.approx(2.75 + T2 * sd / math.sqrt(3), abs=1e-5)
    t = 2.75 / (sd / math.sqrt(3))
    assert jtr["Δ_MTL paired p"] == pytest.approx(1 - t / math.sqrt(2 + t * t), rel=1e-6)    # t with 2 d.o.f.
    assert jtr["depth/abs_err change (%) mean"] == pytest.approx(2.5)
    assert bool(jtr["depth/abs_err change (%) significant"]) and not bool(jtr["Δ_MTL paired significant"])
    assert any("jtr: seed(s) [3, 4] not paired" in n for n in table.notes)
    mtpsl = table.summary[table.summary["method"] == "mtpsl"].iloc[0]
    assert mtpsl["n_pairs"] == 2 and math.isnan(mtpsl["Δ_MTL paired ci_low"])
    base = table.summary[table.summary["method"] == "supervised"].iloc[0]
    assert math.isnan(base["n_pairs"])                               # the baseline is not compared with itself
    shown = summary.display_table(table).set_index("method")
    assert shown.loc["supervised", "n_pairs"] == "baseline" and shown.loc["jtr", "n_pairs"] == 3
    assert "n too small" in shown.loc["mtpsl", "Δ_MTL paired [95% CI]"]
    verdicts = summary.verdicts(table)
    assert verdicts[0].startswith("jtr vs supervised: Δ_MTL +2.8 % [") and verdicts[0].endswith("not significant")
    assert "n too small" in verdicts[1]
    changes = summary.change_table(table).set_index("group")
    assert changes.loc["jtr", "depth abs_err change (%)"].startswith("+2.50 [") and \
        "*" in changes.loc["jtr", "depth abs_err change (%)"]


def test_summary_and_charts_carry_the_statistics(tmp_path):
    sweep = write_paired(tmp_path / "p")
    md = summary.write_summary(sweep).read_text()
    csv = pd.read_csv(sweep / "summary.csv")
    assert {"n_pairs", "Δ_MTL paired ci_low", "Δ_MTL paired p", "semantic/miou change (%) ci_high"} <= set(csv)
    assert md.index("**jtr vs supervised: Δ_MTL +2.8 %") < md.index("| method |")   # the verdict comes first
    assert "Change per task vs the baseline" in md and "Test metrics at the last epoch" in md
    table = tables.load_table(sweep)
    from mtlwb import figures
    fig = figures.change_chart(table, "depth")
    mean = next(t for t in fig.data if t.name.startswith("mean"))
    jtr = list(mean.x).index("jtr")
    assert mean.y[jtr] == pytest.approx(2.5)
    assert mean.error_y.array[jtr] == pytest.approx(T2 * 0.5 / math.sqrt(3), abs=1e-5)   # CI, not a bar from 0
    points = next(t for t in fig.data if t.name == "per seed")
    assert sorted(y for x, y in zip(points.x, points.y) if x == "jtr") == pytest.approx([2.0, 2.5, 3.0])
    assert any(shape.y0 == 0 and shape.y1 == 0 for shape in fig.layout.shapes)            # the zero line
    assert len(figures.change_charts(table)) == 3
    with pytest.raises(ValueError, match="key='edge'"):
        figures.change_chart(table, "edge")


def test_selection_best_val_or_last(tmp_path):
    sweep = write_paired(tmp_path / "p", best_val=True)
    auto = tables.load_table(sweep)
    assert auto.summary.set_index("method").loc["jtr", "n_pairs"] == 3
    assert auto.summary.set_index("method").loc["jtr", "semantic/miou mean"] == pytest.approx(0.6113, abs=1e-4)
    assert "best on the validation split" in summary.selection_caption(auto)
    last = tables.load_table(sweep, select="last")
    assert last.summary.set_index("method").loc["jtr", "semantic/miou mean"] == pytest.approx(0.1)
    assert "last epoch" in summary.selection_caption(last)
    with pytest.raises(ValueError, match="select='best_val'"):
        tables.load_table(write_paired(tmp_path / "q"), select="best_val")
    with pytest.raises(ValueError, match="select="):
        tables.load_table(sweep, select="best")


def test_report_html_hides_code_cells(tmp_path):
    import nbformat

    from mtlwb.sweeps.notebooks import export_html

    cell = nbformat.v4.new_code_cell("secret_source_line = 41 + 1", outputs=[
        nbformat.v4.new_output("execute_result", {"text/plain": "visible_result_42"}, execution_count=1)])
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# Title"), cell])
    nbformat.write(nb, tmp_path / "r.ipynb")
    hidden = export_html(tmp_path / "r.ipynb", tmp_path / "hidden.html", hide_code=True).read_text()
    shown = export_html(tmp_path / "r.ipynb", tmp_path / "shown.html").read_text()
    assert "secret_source_line" in shown and "secret_source_line" not in hidden
    assert "visible_result_42" in hidden and "Title" in hidden


def test_records_from_before_a_field_existed_get_the_value_they_ran_with():
    """A record without a later field groups with new records of the same experiment; loss_reduction, whose default
    changed the numbers, is filled with what older runs used (the per-labelled mean)."""
    from mtlwb.analysis.tables import with_later_fields
    from mtlwb.config import ExperimentConfig

    new = ExperimentConfig(loss_reduction="labelled").to_dict()
    old = {k: v for k, v in new.items() if k not in ("loss_reduction", "sources", "regression_loss")}
    assert with_later_fields(old) == new
    assert with_later_fields({}) == {}
    assert with_later_fields({**old, "loss_reduction": "batch"})["loss_reduction"] == "batch"


def test_the_papers_optimistic_rule_picks_the_epoch_best_on_test_and_is_shown_beside_validation(tmp_path):
    """select="best_test": each run's epoch with the best test multi-task score (here epoch 2, whose test miou the
    validation rule never picks); summary.md keeps the validation table first and adds the optimistic one,
    labelled as such."""
    sweep = write_paired(tmp_path / "p", best_val=True)
    for rid in (p.name for p in sweep.iterdir() if p.is_dir()):
        record = json.loads((sweep / rid / "metrics.json").read_text())
        at_val = record["best_val"]["test"]
        lucky = {"semantic": {"miou": at_val["semantic"]["miou"] + 0.1}, "depth": at_val["depth"]}
        record["history"] = [{"epoch": 1, "eval": at_val, "val": at_val},
                             {"epoch": 2, "eval": lucky, "val": {"semantic": {"miou": 0.0}, "depth": {"abs_err": 9.0}}},
                             {"epoch": 3, "eval": record["final"], "val": at_val}]
        (sweep / rid / "metrics.json").write_text(json.dumps(record))
    optimistic = tables.load_table(sweep, select="best_test")
    jtr = optimistic.summary.set_index("method").loc["jtr"]
    assert jtr["semantic/miou mean"] == pytest.approx(0.6113 + 0.1, abs=1e-4)
    assert set(optimistic.runs["selected"]) == {"best_test@2"}
    assert summary.selection_caption(optimistic).startswith("OPTIMISTIC")
    md = summary.write_summary(sweep).read_text()
    assert md.index("best on the validation split") < md.index("## OPTIMISTIC: the papers' selection rule")
    section = md[md.index("## OPTIMISTIC"):]
    assert "0.7113" in section and "0.7113" not in md[:md.index("## OPTIMISTIC")]
    last_only = summary.write_summary(write_paired(tmp_path / "q")).read_text()   # no validation rule: no section
    assert "OPTIMISTIC" not in last_only


# --- claims of a sweep file: A vs B paired by seed, one verdict per value the selectors leave open -------------
def _write_claims_sweep(root: Path, claims: list[dict]) -> Path:
    base = [0.50, 0.52, 0.48]
    miou = {("a", "onelabel"): base, ("b", "onelabel"): [m * 1.1 for m in base],
            ("c", "onelabel"): [m * 1.1 * 0.9 for m in base],          # 10 % below b on every seed
            ("a", "randomlabel"): base, ("b", "randomlabel"): [m * 1.1 for m in base],
            ("c", "randomlabel"): [m * 1.1 * f for m, f in zip(base, (1.02, 0.98, 1.01))]}   # level with b
    runs = {}
    for (method, setting), values in miou.items():
        for seed, v in enumerate(values):
            rid = f"{method}-{setting}-{seed}"
            params = {"method": method, "label_setting": setting, "seed": seed}
            runs[rid] = {"params": params, "status": "completed", "error": None, "notebook": ""}
            (root / rid).mkdir(parents=True)
            (root / rid / "metrics.json").write_text(json.dumps(
                {"run_id": rid, "status": "completed", "config": params, "tasks": TASKS,
                 "final": {"semantic": {"miou": v}, "depth": {"abs_err": 1.0}}}))
    (root / "state.json").write_text(json.dumps({"name": "claims", "baseline": {"method": "a"}, "runs": runs,
                                                 "spec": {"claims": claims}}))
    return root


def test_claims_are_tested_per_open_setting_with_the_relation_they_state(tmp_path):
    claims = [{"name": "B > A", "group": {"method": "b"}, "vs": {"method": "a"}},
              {"name": "C ≥ B", "group": {"method": "c"}, "vs": {"method": "b"}, "relation": ">="},
              {"name": "C > B", "group": {"method": "c"}, "vs": {"method": "b"}},
              {"name": "D > A", "group": {"method": "d"}, "vs": {"method": "a"}}]
    table = tables.load_table(_write_claims_sweep(tmp_path / "c", claims))
    got = {(c.claim, c.group.split("=")[-1]): c for c in table.claims}
    assert len(table.claims) == 6                        # 3 claims × 2 label settings; D has no runs
    b_a = got[("B > A", "onelabel")]
    assert b_a.vs == "a · label_setting=onelabel" and b_a.comparison.n == 3
    assert b_a.comparison.delta.mean == pytest.approx(5.0)      # semantic +10 %, depth 0 on every seed
    assert b_a.verdict.startswith("supported") and got[("B > A", "randomlabel")].verdict.startswith("supported")
    assert got[("C ≥ B", "onelabel")].verdict.startswith("contradicted")
    assert got[("C ≥ B", "onelabel")].comparison.delta.mean == pytest.approx(-5.0)
    # randomlabel: per-seed Δ_MTL +1, −1, +0.5 -> the interval includes 0
    assert got[("C ≥ B", "randomlabel")].comparison.delta.mean == pytest.approx(0.5 / 3)
    assert got[("C ≥ B", "randomlabel")].verdict.startswith("consistent")
    assert got[("C > B", "randomlabel")].verdict.startswith("not shown")
    assert any(n.startswith("claim D > A: no completed pair") for n in table.notes)
    from mtlwb.analysis.stats import holm
    assert [c.p_holm for c in table.claims] == pytest.approx(holm([c.comparison.delta.p_value for c in table.claims]))
    assert "Holm-adjusted p=" in got[("C ≥ B", "randomlabel")].line()
    lines = summary.verdicts(table)
    assert lines[0].startswith("claim B > A: supported (significantly better) — b · label_setting=onelabel vs a")
    assert (tmp_path / "c" / "summary.md").exists() is False
    text = summary.write_summary(tmp_path / "c").read_text()
    assert "**claim C ≥ B: contradicted (significantly worse)" in text


def test_a_claim_on_a_task_is_judged_on_that_tasks_change(tmp_path):
    """``on: <task>``: the task's primary-metric change decides, not Δ_MTL (B is +10 % on semantic, level on depth,
    so Δ_MTL +5 %)."""
    claims = [{"name": "B > A on semantic", "group": {"method": "b"}, "vs": {"method": "a"}, "on": "semantic"},
              {"name": "B > A on depth", "group": {"method": "b"}, "vs": {"method": "a"}, "on": "depth"},
              {"name": "B > A on edge", "group": {"method": "b"}, "vs": {"method": "a"}, "on": "edge"}]
    table = tables.load_table(_write_claims_sweep(tmp_path / "c", claims))
    got = {(c.claim, c.group.split("=")[-1]): c for c in table.claims}
    semantic, depth = got[("B > A on semantic", "onelabel")], got[("B > A on depth", "onelabel")]
    assert semantic.estimate.mean == pytest.approx(10.0) and semantic.verdict.startswith("supported")
    assert depth.estimate.mean == pytest.approx(0.0) and depth.verdict.startswith("not shown")
    assert "semantic change +10.0 %" in semantic.line() and "Δ_MTL" not in semantic.line()
    assert any(n.startswith("claim B > A on edge: on='edge' is not a task") for n in table.notes)
    text = summary.write_summary(tmp_path / "c").read_text()
    assert "**claim B > A on depth: not shown (interval includes 0) — b · label_setting=onelabel vs a · " \
           "label_setting=onelabel: depth change +0.0 %" in text


def test_a_claim_across_label_settings_pairs_groups_whose_label_splits_differ(tmp_path):
    """Each run records its label split, which follows its label setting: a claim whose selectors name the
    settings (a full-label ceiling vs a starved setting) still finds its pairs."""
    sweep = _write_claims_sweep(tmp_path / "c", [{"name": "B random > A one", "group": {"method": "b", "label_setting":
                                                  "randomlabel"}, "vs": {"method": "a", "label_setting": "onelabel"}}])
    for record_path in sweep.glob("*/metrics.json"):
        record = json.loads(record_path.read_text())
        setting = record["config"]["label_setting"]
        record["label_split"] = {"source": "generated", "setting": setting, "mask_seed": 0, "fallback": False}
        record_path.write_text(json.dumps(record))
    (claim,) = tables.load_table(sweep).claims
    assert claim.comparison.n == 3 and claim.verdict.startswith("supported")


def test_claims_with_fewer_than_three_pairs_are_undecided(tmp_path):
    sweep = _write_claims_sweep(tmp_path / "c", [{"name": "B > A", "group": {"method": "b"}, "vs": {"method": "a"}}])
    state = json.loads((sweep / "state.json").read_text())
    state["runs"] = {k: v for k, v in state["runs"].items() if not k.endswith("-2")}
    (sweep / "state.json").write_text(json.dumps(state))
    (claim, _) = tables.load_table(sweep).claims
    assert claim.comparison.n == 2 and claim.verdict == "undecided (n too small)"


def test_learning_curves_per_group_and_seed_and_their_figure(tmp_path):
    from mtlwb import figures

    sweep = write_paired(tmp_path / "p")
    for rid in ("p0", "p1"):                                  # supervised seeds 0 and 1 get a history
        record = json.loads((sweep / rid / "metrics.json").read_text())
        seed = record["config"]["seed"]
        record["history"] = [
            {"epoch": e, "train": {"semantic": 1.0 / e, "depth": 2.0 / e, "total": 3.0 / e + seed},
             **({"val": {"semantic": {"miou": 0.1 * e + seed}, "depth": {"abs_err": 1.0}},
                 "eval": {"semantic": {"miou": 0.2 * e}}} if e % 2 == 0 else {})}
            for e in (1, 2, 3, 4)]
        (sweep / rid / "metrics.json").write_text(json.dumps(record))
    table = tables.load_table(sweep)
    curves = tables.learning_curves(sweep, table)
    sup = curves[curves["group"] == "supervised"]
    val = sup[(sup["split"] == "val") & (sup["task"] == "semantic")].sort_values(["seed", "epoch"])
    assert val["epoch"].tolist() == [2, 4, 2, 4]                       # evaluated epochs only
    assert val["value"].tolist() == pytest.approx([0.2, 0.4, 1.2, 1.4])
    train = sup[(sup["split"] == "train") & (sup["task"] == "depth")]
    assert len(train) == 8 and train["value"].max() == pytest.approx(2.0)
    assert set(sup["split"]) == {"train", "val", "test"} and set(curves["group"]) == {"supervised"}
    fig = figures.sweep_learning_curves(curves, "semantic", "miou")
    means = [tr for tr in fig.data if tr.showlegend]
    assert [tr.name for tr in means] == ["supervised"]
    assert list(means[0].y) == pytest.approx([0.7, 0.9])               # mean over the two seeds per epoch
    with pytest.raises(ValueError, match="no val curve of task='normal'"):
        figures.sweep_learning_curves(curves, "normal")
    with pytest.raises(ValueError, match="split='train'"):
        figures.sweep_learning_curves(curves, "semantic", split="train")


def test_a_null_baseline_value_is_named_null(tmp_path):
    sweep = write_paired(tmp_path / "p")
    state = json.loads((sweep / "state.json").read_text())
    state["baseline"] = {"task_prior": None}
    (sweep / "state.json").write_text(json.dumps(state))
    assert tables.load_table(sweep).delta_column == "Δ_MTL vs task_prior=null (%)"


@pytest.mark.slow
def test_report_shows_claims_curves_and_the_per_source_table(tmp_path):
    sweep = _write_claims_sweep(tmp_path / "c", [{"name": "B > A", "group": {"method": "b"}, "vs": {"method": "a"}}])
    for path in sweep.glob("*/metrics.json"):
        record = json.loads(path.read_text())
        record["final_by_source"] = {"B": {"semantic": {"miou": 0.123456}, "depth": {"abs_err": 9.0}}}
        record["history"] = [{"epoch": 1, "train": {"semantic": 1.0, "total": 1.0}, "eval": record["final"]}]
        path.write_text(json.dumps(record))
    html = render_report(sweep).read_text()
    assert "claim B &gt; A: supported" in html or "claim B > A: supported" in html
    assert "evaluated on" in html and "0.1235" in html               # the per-source table
    assert "Learning curves" in html and "train loss: semantic" in html


def test_sweep_figures_tool_writes_the_readme_copy_and_checks_names_first(tmp_path, monkeypatch):
    """tools/sweep_figures.py: summary copy + one PNG per chart asked; a wrong task name exits before any write."""
    import importlib.util

    tool_path = Path(__file__).resolve().parents[1] / "tools" / "sweep_figures.py"
    spec = importlib.util.spec_from_file_location("sweep_figures", tool_path)
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    pngs = []
    monkeypatch.setattr(tool, "write_png", lambda fig, path, **kw: pngs.append(Path(path).name) or Path(path))
    sweep = write_paired(tmp_path / "p")
    out = tmp_path / "docs"
    with pytest.raises(SystemExit) as exit_info:
        tool.main([str(sweep), "--out", str(out), "--curves", "normal"])
    assert exit_info.value.code == 2 and not out.exists() and not (sweep / "summary.md").exists()
    assert tool.main([str(sweep), "--out", str(out), "--name", "x", "--change", "delta_mtl",
                      "--change", "semantic"]) == 0
    assert (out / "results" / "x_summary.md").read_text() == (sweep / "summary.md").read_text()
    assert pngs == ["x_change_delta_mtl.png", "x_change_semantic.png"]


# --- the report: which sweep, refused when there is nothing to show, the table under the verdict ---------------

def test_report_sweep_dir_refuses_in_one_line_what_is_no_sweep(tmp_path, monkeypatch):
    """A mistyped path used to render an empty report (exit 0), a number a pathlib TypeError not naming sweep_dir."""
    with pytest.raises(ValueError) as e:
        summary.report_sweep_dir(str(tmp_path / "nonexistent"))
    assert str(e.value) == (f"sweep_dir={str(tmp_path / 'nonexistent')!r}: no such sweep folder (`mtlwb sweep "
                            "sweeps/<name>.yaml` writes reports/sweeps/<name>/)")
    with pytest.raises(TypeError, match=r"^sweep_dir=5 \(int\): expected the path of a sweep folder as text, "
                                        r"e\.g\. -p sweep_dir reports/sweeps/quick$"):
        summary.report_sweep_dir(5)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="'.*empty': not a sweep folder \\(no state.json"):
        summary.report_sweep_dir(tmp_path / "empty")
    queued = tmp_path / "queued"
    queued.mkdir()
    (queued / "state.json").write_text(json.dumps({"name": "q", "runs": {
        "a": {"params": {}, "status": "queued"}, "b": {"params": {}, "status": "pending"}}}))
    with pytest.raises(ValueError, match=r"no finished runs to report \(2 run\(s\), status pending, queued\)"):
        summary.report_sweep_dir(str(queued))
    with pytest.raises(ValueError, match="no such sweep folder"):       # refused before a kernel starts
        render_report(tmp_path / "nonexistent")
    assert not (tmp_path / "nonexistent").exists()
    sweep = _write_sweep(tmp_path / "hand")                             # completed and failed runs: a report
    assert summary.report_sweep_dir(str(sweep)) == sweep
    # the default (None): make run's sweep if it has a finished run, else nothing to show (fresh clone, nbval)
    monkeypatch.chdir(tmp_path)
    assert summary.report_sweep_dir(None) is None
    _write_sweep(tmp_path / "reports" / "sweeps" / "quick")
    assert summary.report_sweep_dir(None) == Path("reports/sweeps/quick")


def test_report_header_names_this_sweep_and_its_command(tmp_path, monkeypatch):
    sweep = _write_sweep(tmp_path / "reports" / "sweeps" / "hand")
    table = tables.load_table(sweep)
    monkeypatch.chdir(tmp_path)
    header = summary.report_header(table, sweep.resolve())
    assert "**Sweep `hand`**: 7 run(s) (6 completed, 1 failed); baseline **method=supervised**" in header
    assert header.endswith("`papermill notebooks/ablation_report.ipynb out.ipynb -p sweep_dir reports/sweeps/hand`")
    assert "quick" not in header
    assert summary.report_header(table, sweep, "last").endswith("-p sweep_dir reports/sweeps/hand -p select last`")


@pytest.mark.slow
def test_report_puts_the_table_under_the_verdict_and_names_its_sweep(tmp_path):
    import re

    sweep = write_paired(tmp_path / "p")
    html = render_report(sweep).read_text()
    assert f"-p sweep_dir {sweep.resolve()}" in html and "reports/sweeps/quick" not in html
    verdict = html.index(">Verdict")
    table = html.index("<table", verdict)
    assert "jtr vs supervised" in html[verdict:table]                  # the verdict lines, then straight the table
    assert "js-plotly-plot" not in html[verdict:table] and 'class="plotly' not in html[verdict:table]
    assert html.index("Metrics per group") < table < html.index("Change vs the baseline")
    assert not re.findall(r'<script[^>]+src="https?:', html)           # nothing loaded from the network


@pytest.mark.slow
@pytest.mark.parametrize("value, error", [("reports/sweeps/nonexistent", "ValueError: sweep_dir='reports/sweeps/"
                                           "nonexistent': no such sweep folder"),
                                          (5, "TypeError: sweep_dir=5 (int): expected the path of a sweep folder")])
def test_report_notebook_under_plain_papermill_refuses_a_bad_sweep_dir(value, error, tmp_path):
    import nbformat
    import papermill as pm

    out = tmp_path / "out.ipynb"
    with pytest.raises(pm.PapermillExecutionError) as e:
        pm.execute_notebook(str(REPORT_NOTEBOOK), str(out), parameters={"sweep_dir": value},
                            progress_bar=False, kernel_name="python3")
    assert f"{e.value.ename}: {e.value.evalue}".startswith(error)
    assert "\n" not in e.value.evalue
    ran = [c for c in nbformat.read(out, as_version=4).cells if c.cell_type == "code" and c.execution_count]
    assert ran[-1].outputs[-1].output_type == "error" and not ran[-1].outputs[:-1]   # nothing shown before it
