"""A sweep's tables as a reader sees them: text cells (mean ± std, intervals, p), the verdicts, ``summary.md``,
and the header and folder check of the HTML report.

Apart from ``analysis.tables``, which reads the records, groups the runs and compares them (numbers); this module
only turns a ``SweepTable`` into what is shown. The report notebook (``notebooks/ablation_report.ipynb``) and
``summary.md`` show the same tables, so both call these.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import pandas as pd

from ..core.io import atomic_write_text, read_json
from ..experiment.files import STATE, SUMMARY_CSV, SUMMARY_MD
from .stats import CONFIDENCE, paired_estimate, verdict_line
from .tables import DIAG, SweepTable, group_runs, load_table, metric_column, source_column

DEFAULT_SWEEP_DIR = Path("reports/sweeps/quick")   # what `make run` writes: the report notebook's default
FINISHED = ("completed", "failed")                 # a run with a result to report (its metrics, or why it failed)


def verdicts(table: SweepTable) -> list[str]:
    """One line per claim of the sweep file (first), then per group compared with the baseline:
    ``jtr vs supervised: Δ_MTL +1.2 % [-0.5, +2.9] (n=5, p=0.14): ...``."""
    return [c.line() for c in table.claims] + [verdict_line(group, base, c)
                                               for group, (base, c) in table.comparisons.items()]


def selection_caption(table: SweepTable) -> str:
    """Which epoch's test metrics the table shows (every table says it)."""
    done = table.runs[table.runs["status"] == "completed"]
    if table.select == "best_test":
        return ("OPTIMISTIC — test metrics at the epoch best on the TEST split itself (the published codes' rule; "
                "it picks each run's luckiest evaluation, so it overstates every group; for comparison only).")
    chosen = done["selected"].value_counts().to_dict() if "selected" in done else {}
    n_best, n_last = chosen.get("best_val", 0), chosen.get("last", 0)
    best = ("the epoch best on the validation split (validation multi-task score, never the test split)")
    if n_best and not n_last:
        return f"Test metrics at {best}."
    if n_best:
        return (f"Test metrics at {best} for the {n_best} run(s) with a validation split, at the last epoch for "
                f"the {n_last} without one.")
    return "Test metrics at the last epoch (no validation split, no model selection)."


# --- tables ---------------------------------------------------------------------------------------------------
def _pm(mean: float, std: float) -> str:
    if mean is None or math.isnan(mean):
        return "–"
    return f"{mean:.4g}" if std is None or math.isnan(std) else f"{mean:.4g} ± {std:.2g}"


def display_table(table: SweepTable) -> pd.DataFrame:
    """Compact table: varying parameters, n_seeds, each task's primary metric as mean ± std, Δ_MTL."""
    s = table.summary
    if s.empty:
        return pd.DataFrame()
    out = pd.DataFrame({k: s[k] for k in table.varying or ["group"]})
    out["n_seeds"] = s["n_seeds"]
    for t in table.tasks:
        col = metric_column(t.name, t.primary_metric)
        arrow = "↓" if t.lower_is_better else "↑"
        out[f"{t.name} {t.primary_metric} {arrow}"] = [_pm(m, d) for m, d in zip(s[f"{col} mean"], s[f"{col} std"])]
    out[table.delta_column] = [("–" if math.isnan(v) else f"{v:+.2f}") for v in s[table.delta_column]]
    if "n_pairs" in s:
        paired = [table.comparisons.get(g) for g in s["group"]]
        out["n_pairs"] = ["baseline" if b else ("–" if c is None else c[1].n) for c, b in zip(paired, s["is_baseline"])]
        out[f"Δ_MTL paired [{CONFIDENCE:.0%} CI]"] = ["" if c is None else c[1].delta.text() for c in paired]
        out["p (paired t)"] = ["" if c is None else c[1].delta.p_text() for c in paired]
    return out


def source_table(table: SweepTable) -> pd.DataFrame:
    """Per group and evaluated source: each task's primary metric (last epoch, mean ± std over seeds)."""
    s = table.summary
    names = sorted({c.split("]")[0][1:] for c in s.columns if c.startswith("[")}) if not s.empty else []
    rows = []
    for _, r in s.iterrows():
        for name in names:
            row = {"group": r["group"], "evaluated on": name}
            for t in table.tasks:
                col = source_column(name, t.name, t.primary_metric)
                arrow = "↓" if t.lower_is_better else "↑"
                row[f"{t.name} {t.primary_metric} {arrow}"] = _pm(r.get(f"{col} mean"), r.get(f"{col} std"))
            if any(v != "–" for k, v in row.items() if k not in ("group", "evaluated on")):   # a run without it
                rows.append(row)
    return pd.DataFrame(rows)


def change_table(table: SweepTable) -> pd.DataFrame:
    """Per-task paired change vs the baseline group (% of the baseline, + = better): mean [95 % CI], p."""
    s = table.summary
    if s.empty or not table.comparisons:
        return pd.DataFrame()
    rows = []
    for group, (base, c) in table.comparisons.items():
        row = {"group": group, "vs": base, "n_pairs": c.n}
        for t in table.tasks:
            e = c.estimates[t.name]
            row[f"{t.name} {t.primary_metric} change (%)"] = e.text() + (f", p={e.p_text()}" if e.enough else "")
        e = c.delta
        row["Δ_MTL (%)"] = e.text() + (f", p={e.p_text()}" if e.enough else "")
        rows.append(row)
    return pd.DataFrame(rows)


# --- mechanism diagnostics ----------------------------------------------------------------------------------
# (measure, column header, with a confidence interval) of each row of diagnostics_table
DIAGNOSTICS_COLUMNS = (("cosine", "prediction cos", True), ("positive_share", "share cos > 0", False),
                       ("norm_ratio", "‖g_aux‖ / ‖g_sup‖", False), ("backbone_cosine", "backbone cos", True),
                       ("backbone_supervised_cosine", "yardstick: labelled cos", False),
                       ("landscape truth_below_prediction", "truth < prediction (share of seeds)", False))
BACKBONE_ROW = "all tasks (backbone)"


def _diag_text(values: list[float], interval: bool) -> str:
    """Mean over seeds (with its t-interval when asked), "n/a" without values."""
    if not values:
        return "n/a"
    return paired_estimate(values).text(digits=3) if interval else f"{sum(values) / len(values):.3g}"


def _seed_values(per_seed: pd.DataFrame, key: str) -> list[float]:
    """The seeds' values of one diagnostics measure (seeds where it does not apply left out)."""
    column = DIAG + key
    return [float(v) for v in per_seed[column] if not math.isnan(v)] if column in per_seed else []


def diagnostics_table(table: SweepTable) -> pd.DataFrame:
    """Per group and task, at the selected epoch: the auxiliary gradient's cosine with the hidden label's on the
    prediction (mean [95 % CI] over seeds, * = the interval excludes 0), the share of images where it is positive,
    its norm relative to a labelled image's supervised gradient, the same cosine on the shared encoder, the
    yardstick (the labelled supervision's encoder cosine with the hidden labels'), and the share of seeds whose
    auxiliary term is lower at the truth than at the prediction; one more row per group for the encoder totals over
    tasks. Empty when no run recorded diagnostics; "n/a" where a measure does not apply (e.g. a method whose terms
    read no prediction)."""
    done = table.runs[table.runs["status"] == "completed"]
    columns = [c for c in done.columns if c.startswith(DIAG)]
    if table.summary.empty or not columns:
        return pd.DataFrame()
    rows = []
    for _, group in table.summary.iterrows():
        per_seed = group_runs(done, group, table).groupby("seed")[columns].mean()
        n = len(_seed_values(per_seed, "backbone/supervised_cosine"))      # seeds that recorded diagnostics
        if not n:
            continue
        for t in table.tasks:
            row = {"group": group["group"], "task": t.name, "n_seeds": n}
            row.update({header: _diag_text(_seed_values(per_seed, f"{t.name}/{key}"), ci)
                        for key, header, ci in DIAGNOSTICS_COLUMNS})
            rows.append(row)
        row = {"group": group["group"], "task": BACKBONE_ROW, "n_seeds": n}
        row.update({header: "" for _, header, _ in DIAGNOSTICS_COLUMNS})
        row.update({"backbone cos": _diag_text(_seed_values(per_seed, "backbone/cosine"), True),
                    "yardstick: labelled cos": _diag_text(_seed_values(per_seed, "backbone/supervised_cosine"), False),
                    "‖g_aux‖ / ‖g_sup‖": _diag_text(_seed_values(per_seed, "backbone/norm_ratio"), False)})
        rows.append(row)
    return pd.DataFrame(rows)


DIAGNOSTICS_CAPTION = (
    "At the selected epoch, on the probe images where a task is hidden from training: *prediction cos* is the "
    "cosine between the gradient the method's auxiliary terms send into the task's prediction and the gradient "
    "the hidden label would send (mean [95 % CI] over seeds, * = the interval excludes 0; 1 = the term acts as the "
    "label would, 0 = unrelated); *share cos > 0* the share of images where it is positive; *‖g_aux‖ / ‖g_sup‖* its "
    "size relative to the supervised gradient a labelled image gets; *backbone cos* the same cosine on the shared "
    "encoder's parameters, beside the *yardstick*: the labelled supervision's encoder cosine with the hidden "
    "labels'; *truth < prediction* the share of seeds whose auxiliary term is lower with the ground truth in place "
    "of the prediction. n/a: the measure does not apply (no auxiliary term, or one that reads no prediction).")


# --- summary.md -------------------------------------------------------------------------------------------------
def to_markdown(frame: pd.DataFrame) -> str:
    """A GitHub markdown table (no extra dependency)."""
    cells = [[str(c) for c in frame.columns]] + [[str(v).replace("|", "\\|") for v in row]
                                                 for row in frame.itertuples(index=False)]
    lines = ["| " + " | ".join(r) + " |" for r in cells]
    lines.insert(1, "|" + "|".join("---" for _ in frame.columns) + "|")
    return "\n".join(lines)


def describe(table: SweepTable) -> list[str]:
    """Notes that go with the table: what every group shares, how Δ_MTL was paired, what is missing."""
    lines = []
    if not table.summary.empty:
        constant = [k for k in table.group_keys if k not in table.varying and table.summary[k].iloc[0] != ""]
        if constant:
            lines.append("same for every group: " + ", ".join(f"{k}={table.summary[k].iloc[0]}" for k in constant))
    return lines + table.notes


def write_summary(sweep_dir: str | Path, select: str = "auto", table: SweepTable | None = None) -> Path:
    """``summary.csv`` (every metric, mean/std/n, paired statistics) and ``summary.md`` (verdicts, primary
    metrics, Δ_MTL with its paired interval, per-task paired changes, failures). ``table``: the sweep's
    ``load_table(sweep_dir, select)`` when the caller already has it (then ``select`` is not used)."""
    sweep_dir = Path(sweep_dir)
    table = table if table is not None else load_table(sweep_dir, select)
    atomic_write_text(sweep_dir / SUMMARY_CSV, table.summary.to_csv(index=False))
    md = [f"# Sweep `{table.name}`", ""]
    md += [f"**{line}**  " for line in verdicts(table)] + ([""] if table.comparisons or table.claims else [])
    md += [f"{selection_caption(table)} Mean ± std over seeds (sample std). Δ_MTL (%) relative to the baseline "
           f"**{table.baseline_name}**, from the seed-averaged primary metrics; positive = better than the "
           f"baseline. *Paired*: mean of the per-seed Δ_MTL over the seeds both groups ran (n_pairs), "
           f"{CONFIDENCE:.0%} t-interval, paired t-test p; * = the interval excludes 0.", ""]
    shown = display_table(table)
    md += [to_markdown(shown) if not shown.empty else "_no completed runs_", ""]
    by_source = source_table(table)
    if not by_source.empty:
        md += ["## Per evaluated source (last epoch)", "", "Runs with several training sources evaluate each "
               "source's own split; main = the config's data_root (the table above).", "", to_markdown(by_source), ""]
    changes = change_table(table)
    if not changes.empty:
        md += ["## Change per task vs the baseline (paired by seed)", "",
               f"% of the baseline's primary metric, positive = better; mean [{CONFIDENCE:.0%} CI] over the paired "
               "seeds, p of the paired t-test, * = the interval excludes 0.", "", to_markdown(changes), ""]
    diag = diagnostics_table(table)
    if not diag.empty:
        md += ["## Does the cross-task signal point where the hidden labels would?", "", DIAGNOSTICS_CAPTION, "",
               to_markdown(diag), ""]
    md += optimistic_section(sweep_dir, table)
    md += [f"- {n}" for n in describe(table)]
    fails = table.failures
    if not fails.empty:
        md += ["", f"## {len(fails)} run(s) not completed", ""]
        md += [f"- `{r.run_id}` ({r.status}): {r.error} — notebook: {r.notebook}" for r in fails.itertuples()]
    atomic_write_text(sweep_dir / SUMMARY_MD, "\n".join(md) + "\n")
    return sweep_dir / SUMMARY_MD


def optimistic_section(sweep_dir: Path, table: SweepTable) -> list[str]:
    """summary.md lines: the same table and verdicts under the papers' rule (epoch best on the TEST split), beside
    a table selected on validation — how much that rule adds. Nothing when the table is not selected on
    validation (without a validation split there is no honest rule to set it beside)."""
    done = table.runs[table.runs["status"] == "completed"]
    if table.select == "best_test" or "selected" not in done or not (done["selected"] == "best_val").any():
        return []
    optimistic = load_table(sweep_dir, "best_test")
    shown = display_table(optimistic)
    if shown.empty:
        return []
    return ["## OPTIMISTIC: the papers' selection rule (epoch best on the test split)", "",
            selection_caption(optimistic) + " The tables above select on validation; compare the two to see how "
            "much a published gain may owe to this rule.", "",
            *[f"- {line}" for line in verdicts(optimistic)], "", to_markdown(shown), ""]


# --- the report (notebooks/ablation_report.ipynb → summary.html) ----------------------------------------------
def report_sweep_dir(sweep_dir: str | os.PathLike | None) -> Path | None:
    """The sweep folder a report shows, checked before anything is read: a bad value is one line naming
    ``sweep_dir``, what is wrong and what is expected.

    ``None`` (the report notebook's default) is ``make run``'s sweep (``DEFAULT_SWEEP_DIR``) when it has a finished
    run, else None: a fresh clone (JupyterLab, nbval) gets a hint, not an error. A given folder must exist, hold a
    ``state.json`` and at least one finished run (completed, or failed with its error); an empty report from a
    mistyped path would look like a sweep that produced nothing.
    """
    if sweep_dir is None:
        return DEFAULT_SWEEP_DIR if _finished_runs(DEFAULT_SWEEP_DIR) else None
    if not isinstance(sweep_dir, (str, os.PathLike)):
        raise TypeError(f"sweep_dir={sweep_dir!r} ({type(sweep_dir).__name__}): expected the path of a sweep folder "
                        f"as text, e.g. -p sweep_dir {DEFAULT_SWEEP_DIR}")
    path = Path(sweep_dir)
    if not path.is_dir():
        raise ValueError(f"sweep_dir={str(path)!r}: no such sweep folder (`mtlwb sweep sweeps/<name>.yaml` writes "
                         "reports/sweeps/<name>/)")
    if not (path / STATE).is_file():
        raise ValueError(f"sweep_dir={str(path)!r}: not a sweep folder (no state.json; `mtlwb sweep` writes one)")
    runs = read_json(path / STATE).get("runs", {})
    if not _finished_runs(path):
        statuses = sorted({str(entry.get("status")) for entry in runs.values()})
        raise ValueError(f"sweep_dir={str(path)!r}: no finished runs to report ({len(runs)} run(s), status "
                         f"{', '.join(statuses) or 'none'}); run or resume the sweep first")
    return path


def _finished_runs(sweep_dir: Path) -> list[str]:
    state = sweep_dir / STATE
    if not state.is_file():
        return []
    return [rid for rid, entry in read_json(state).get("runs", {}).items() if entry.get("status") in FINISHED]


def report_header(table: SweepTable, sweep_dir: str | Path, select: str = "auto") -> str:
    """Markdown heading of a report: which sweep, how many runs in which state, the baseline, and the command that
    renders this very report again (its own ``-p sweep_dir``, relative to the project root when inside it)."""
    shown = Path(sweep_dir)
    if shown.is_absolute() and shown.is_relative_to(Path.cwd()):
        shown = shown.relative_to(Path.cwd())
    counts = table.runs["status"].value_counts()
    states = ", ".join(f"{n} {status}" for status, n in counts.items())
    command = (f"papermill notebooks/ablation_report.ipynb out.ipynb -p sweep_dir {shown}"
               + (f" -p select {select}" if select != "auto" else ""))
    return (f"**Sweep `{table.name}`**: {len(table.runs)} run(s) ({states}); baseline **{table.baseline_name}**.  \n"
            f"Folder `{shown}`; this report: `{command}`")


__all__ = ["BACKBONE_ROW", "DEFAULT_SWEEP_DIR", "DIAGNOSTICS_CAPTION", "DIAGNOSTICS_COLUMNS", "FINISHED",
           "change_table", "describe", "diagnostics_table", "display_table", "optimistic_section", "report_header",
           "report_sweep_dir", "selection_caption", "source_table", "to_markdown", "verdicts", "write_summary"]
