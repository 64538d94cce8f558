"""Sweep results as tables: a sweep's run records read, grouped over seeds and compared with a named baseline.

The numbers only: ``analysis.summary`` turns a ``SweepTable`` into what is shown (text cells, verdicts,
``summary.md``, the report's header), and ``mtlwb.figures`` draws it (``figures.sweep_metrics``, the long frames
below).

A *group* is every run with the same parameters except ``seed`` (and
``device``, which does not change the numbers). Each group's metrics are
averaged over its completed seeds (std is the sample std, ddof=1; empty with
one seed). Δ_MTL is computed from the seed-averaged metrics of a group and of
its baseline group: the group matching the sweep's ``baseline`` parameters
that agrees with it on every parameter in which the baseline groups differ
among themselves (e.g. the same ``label_setting``). The baseline is named in
the Δ column header, because a Δ means nothing without it.

Next to it, every group is compared with its baseline group *seed by seed* (``mtlwb.analysis.stats``): the mean
per-task change and the per-seed Δ_MTL with a 95 % t-interval and a paired t-test over the seeds both
groups ran ("n too small" below three pairs). Which epoch's test metrics a run contributes is ``select``:
the epoch best on the validation split when the run has one (``val_fraction`` > 0), else the last epoch.

Runs recorded with ``diagnostics`` (``mtlwb.diagnostics``) contribute the diagnostics of that same epoch
(columns ``diag:<task>/<measure>``); ``summary.diagnostics_table`` gives their mean and 95 % t-interval over each
group's seeds: does the cross-task signal point where the hidden labels would?
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from .. import identity
from ..core.io import read_json
from ..data.sources import sources_text
from ..experiment import diagnostics
from ..experiment.files import METRICS, STATE
from ..experiment.record import read_record
from ..experiment.selection import best_on_test
from ..objectives.metrics import delta_mtl
from ..tasks import TaskSpec
from .records import label_split_text
from .stats import (
    DELTA,
    TOO_FEW,
    Comparison,
    PairedEstimate,
    compare,
    holm,
    verdict_line,
)

NOT_GROUPED = ("seed", *sorted(identity.EXECUTION_ONLY))   # a group: every run of it but for the seed
DIAG = "diag:"                    # runs-frame column prefix of a diagnostics measure at the selected epoch
# auto: best_val where the run has a validation split, else last; best_test: the papers' optimistic rule (the epoch
# best on the TEST split), only ever shown beside the validation rule, never a default
SELECTIONS = ("auto", "last", "best_val", "best_test")


@dataclass
class SweepTable:
    """Per-run and per-group frames of one sweep, plus what is needed to read them."""

    name: str
    runs: pd.DataFrame                 # one row per run (all statuses), metric columns "task/metric"
    summary: pd.DataFrame              # one row per group of completed runs
    tasks: list[TaskSpec]
    group_keys: list[str]              # parameters that define a group (all but seed)
    varying: list[str]                 # group keys whose value differs between groups
    baseline: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    select: str = "auto"
    comparisons: dict[str, tuple[str, Comparison]] = field(default_factory=dict)  # group -> (its baseline, stats)
    claims: list[ClaimResult] = field(default_factory=list)    # the sweep file's claims, evaluated

    @property
    def baseline_name(self) -> str:
        return ", ".join(f"{k}={_value_text(self.baseline, k)}" for k in self.baseline) or "none"   # None: "null"

    @property
    def delta_column(self) -> str:
        return f"Δ_MTL vs {self.baseline_name} (%)"

    @property
    def failures(self) -> pd.DataFrame:
        return self.runs.loc[self.runs["status"] != "completed", ["run_id", "status", "error", "notebook"]]


def _text(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def _value_text(values: dict[str, Any], key: str, method: str | None = None) -> str:
    """A run's value of a parameter as text: None (e.g. eval_samples = all images) is "null", a missing key ""."""
    if key not in values:
        return ""
    if key == "sources" and isinstance(values[key], list):
        return sources_text(values[key])
    if key == "method_options" and isinstance(values[key], dict):
        return _text(_options_name(values.get("method", method), values[key]))
    return "null" if values[key] is None else _text(values[key])


def _options_name(method: str | None, options: dict[str, Any]) -> dict[str, Any]:
    """A run's method options as a table names them: the fewest options that resolve to the same ones
    (``methods.shortest_options``), so a run recorded with every option resolved and one written ``{}``, or
    ``{use_vq: true}`` at its default, share one group and one label."""
    from ..methods import METHODS, options_dict, parse_options, shortest_options

    if method not in METHODS:
        return options
    try:
        return shortest_options(METHODS[method], options_dict(parse_options(METHODS[method], options)))
    except (TypeError, ValueError):   # options of an older mtlwb that no longer parse: shown as recorded
        return options


# A field added to ExperimentConfig after a run was recorded: the run used what the code did then — the field's
# default for every field added with a behaviour-preserving default, except these, whose default changed numbers.
_BEFORE_FIELD = {"loss_reduction": "labelled"}


def with_later_fields(config: dict[str, Any]) -> dict[str, Any]:
    """A recorded config completed with the fields added since, at the values the run actually used, so that
    runs recorded before and after a field existed group together when they ran the same experiment."""
    if not config:
        return config
    defaults = _values_before_fields()
    return {**{k: copy.deepcopy(v) for k, v in defaults.items() if k not in config}, **config}


@functools.cache
def _values_before_fields() -> dict[str, Any]:
    """Every config field at the value a run recorded without it used (one default config, built once)."""
    from ..config import ExperimentConfig

    default = ExperimentConfig()
    return {f.name: _BEFORE_FIELD.get(f.name, getattr(default, f.name)) for f in dataclasses.fields(ExperimentConfig)}


def metric_column(task: str, metric: str) -> str:
    return f"{task}/{metric}"


def source_column(source: str, task: str, metric: str) -> str:
    """A run's last-epoch metric on one training source's evaluation split (``final_by_source``)."""
    return f"[{source}] {metric_column(task, metric)}"


def load_table(sweep_dir: str | Path, select: str = "auto") -> SweepTable:
    """Read ``state.json`` and every run's ``metrics.json``; group and compare.

    ``select``: which test metrics a run contributes — ``"best_val"`` (at the epoch best on validation; an
    error for a run without a validation split), ``"last"`` (last epoch), ``"auto"`` (best_val where
    present, else last) or ``"best_test"`` (the epoch best on the test split itself: the published codes'
    rule, optimistic, for comparison only). ``selection_caption`` says which the table shows.
    """
    if select not in SELECTIONS:
        raise ValueError(f"select={select!r}: allowed {list(SELECTIONS)}")
    sweep_dir = Path(sweep_dir)
    state = read_json(sweep_dir / STATE)
    baseline = state.get("baseline") or {}
    records = {rid: read_record(sweep_dir / rid) for rid, entry in state["runs"].items()
               if entry.get("status") == "completed" and (sweep_dir / rid / METRICS).is_file()}
    # every effective value a run used (its record's config), not only the keys the sweep file set
    names = sorted(({k for entry in state["runs"].values() for k in entry["params"]}
                    | {k for record in records.values() for k in record.get("config", {})}) - {"seed"})
    fallbacks = [rid for rid, record in records.items() if (record.get("label_split") or {}).get("fallback")]
    rows, tasks = [], None
    for rid, entry in state["runs"].items():
        row = {"run_id": rid, "status": entry.get("status"), "error": entry.get("error"),
               "notebook": entry.get("notebook"), "seconds": entry.get("seconds")}
        params, config = entry["params"], {}
        if rid in records:
            record = records[rid]
            config = with_later_fields(record.get("config", {}))
            row["param:label_split"] = label_split_text(record.get("label_split"))
            tasks = tasks or [TaskSpec(**t) for t in record["tasks"]]
            metrics, row["selected"] = _selected_metrics(record, select, rid)
            for task, values in metrics.items():
                row.update({metric_column(task, m): v for m, v in values.items()})
            row.update({DIAG + k: v for k, v in diagnostics.flatten(_selected_entry(record, row["selected"])).items()})
            for source, by_task in (record.get("final_by_source") or {}).items():   # several training sources
                row.update({source_column(source, task, m): v for task, vs in by_task.items() for m, v in vs.items()})
        # a parameter a run did not set takes the value it ran with (from its record), so groups compare
        method = config.get("method", params.get("method"))
        row.update({f"param:{k}": _value_text(config if k in config else params, k, method) for k in names})
        row["seed"] = params.get("seed", config.get("seed"))
        row["is_baseline"] = bool(baseline) and all(_text(params.get(k, config.get(k))) == _text(v)
                                                    for k, v in baseline.items())
        rows.append(row)
    runs = pd.DataFrame(rows)
    keys = sorted(c for c in runs.columns if c.startswith("param:") and c[6:] not in NOT_GROUPED)
    runs[keys] = runs[keys].fillna("")
    group_keys = sorted((k[6:] for k in keys), key=lambda k: (k != "method", k))  # method first in labels
    table = SweepTable(state.get("name", sweep_dir.name), runs, pd.DataFrame(), tasks or [], group_keys, [],
                       baseline, select=select)
    if fallbacks:
        table.notes.append(f"LABEL SPLIT FALLBACK in {len(fallbacks)} run(s) ({', '.join(fallbacks)}): the published "
                           f"split file was missing, a generated split was used (not the papers')")
    table.summary = _summarize(table)
    table.claims = evaluate_claims(table, (state.get("spec") or {}).get("claims") or [])
    return table


def _selected_metrics(record: dict, select: str, run_id: str) -> tuple[dict, str]:
    """The test metrics the run contributes under ``select``, and which epoch they are from."""
    if select == "best_test":
        best_test = best_on_test(record.get("history") or [], [TaskSpec(**t) for t in record["tasks"]])
        return (best_test["test"], f"best_test@{best_test['epoch']}") if best_test else (record["final"], "last")
    best = record.get("best_val")
    if select == "best_val" and not best:
        raise ValueError(f"select='best_val': run {run_id!r} has no validation split (val_fraction=0), so no "
                         "best-on-validation epoch; use select='last' or 'auto'")
    if select != "last" and best:
        return best["test"], "best_val"
    return record["final"], "last"


def _selected_entry(record: dict, selected: str) -> dict:
    """The history entry of the epoch whose test metrics the run contributes ({} when the record has none)."""
    evaluated = [h for h in record.get("history") or [] if "eval" in h]
    if not evaluated:
        return {}
    if selected == "best_val":
        return next((h for h in evaluated if h["epoch"] == record["best_val"]["epoch"]), {})
    if selected.startswith("best_test@"):
        return next((h for h in evaluated if h["epoch"] == int(selected.split("@")[1])), {})
    return evaluated[-1]


def _summarize(table: SweepTable) -> pd.DataFrame:
    done = table.runs[table.runs["status"] == "completed"]
    metric_cols = [c for c in done.columns if "/" in c]
    keys = [f"param:{k}" for k in table.group_keys]
    if done.empty or not metric_cols:
        table.notes.append("no completed runs")
        return pd.DataFrame()
    grouped = done.groupby(keys, sort=False, dropna=False) if keys else done.groupby(lambda _: 0)
    summary = grouped[metric_cols].agg(["mean", "std"])
    summary.columns = [f"{c} {stat}" for c, stat in summary.columns]
    summary["n_seeds"] = grouped.size()
    summary["is_baseline"] = grouped["is_baseline"].first()
    summary = summary.reset_index(drop=not keys).rename(columns={k: k[6:] for k in keys})
    if not keys:
        summary = summary.reset_index(drop=True)
    table.varying = [k for k in table.group_keys if summary[k].nunique() > 1]
    summary.insert(0, "group", [_label(r, table.varying) for _, r in summary.iterrows()])
    summary[table.delta_column] = _deltas(summary, table)
    _add_paired(summary, table, done)
    return summary


def _label(row: pd.Series, varying: list[str]) -> str:
    """Group name from its varying parameters; the label split is left out where the label setting names it
    (it still has its own column in the tables)."""
    keys = [k for k in varying if not (k == "label_split" and "label_setting" in varying)]
    return " · ".join(f"{k}={row[k]}" if k != "method" else str(row[k]) for k in keys) or "all runs"


def _means(row: pd.Series, tasks: list[TaskSpec]) -> dict[str, dict[str, float]]:
    return {t.name: {t.primary_metric: float(row.get(f"{metric_column(t.name, t.primary_metric)} mean", math.nan))}
            for t in tasks}


def _deltas(summary: pd.DataFrame, table: SweepTable) -> list[float]:
    """Δ_MTL of every group vs its matching baseline group (NaN where there is none)."""
    if not table.baseline or not table.tasks:
        table.notes.append("no baseline given: Δ_MTL not computed")
        return [math.nan] * len(summary)
    base = summary[summary["is_baseline"]]
    if base.empty:
        table.notes.append(f"baseline ({table.baseline_name}) has no completed runs: Δ_MTL not computed")
        return [math.nan] * len(summary)
    match = [k for k in table.group_keys if base[k].nunique() > 1]
    if match:
        table.notes.append(f"each group is compared with the baseline run with the same {', '.join(match)}")
    out = []
    for (_, row), b in zip(summary.iterrows(), _matching_baseline(summary, table)):
        if b is None:
            out.append(math.nan)
            continue
        try:
            out.append(delta_mtl(_means(row, table.tasks), _means(summary.loc[b], table.tasks), table.tasks,
                                 table.baseline_name))
        except ValueError as e:   # a NaN metric or a zero baseline: say so, keep the table
            table.notes.append(f"{row['group']}: Δ_MTL undefined ({e})")
            out.append(math.nan)
    return out


def _matching_baseline(summary: pd.DataFrame, table: SweepTable) -> list[Any]:
    """Index (in ``summary``) of each group's baseline group, None where there is none.

    The baseline group agrees with the group on every parameter in which the baseline groups differ among
    themselves (e.g. the same label_setting).
    """
    if not table.baseline or summary.empty:
        return [None] * len(summary)
    base = summary[summary["is_baseline"]]
    match = [k for k in table.group_keys if base[k].nunique() > 1]
    out = []
    for _, row in summary.iterrows():
        same = base
        for k in match:
            same = same[same[k] == row[k]]
        out.append(same.index[0] if not same.empty else None)
    return out


# --- paired statistics ------------------------------------------------------------------------------
STATS = ("mean", "ci_low", "ci_high", "p", "wilcoxon_p", "significant")


def paired_column(key: str, stat: str, table: SweepTable) -> str:
    """summary.csv column of a paired statistic: ``Δ_MTL paired mean`` or ``semantic/miou change (%) ci_low``."""
    if key == DELTA:
        return f"Δ_MTL paired {stat}"
    task = next(t for t in table.tasks if t.name == key)
    return f"{metric_column(task.name, task.primary_metric)} change (%) {stat}"


def group_runs(done: pd.DataFrame, row: pd.Series, table: SweepTable) -> pd.DataFrame:
    """The runs (of ``done``) of the summary row's group (its seeds' points in ``figures.sweep_metrics``)."""
    for k in table.group_keys:
        done = done[done[f"param:{k}"] == row[k]]
    return done


def _seed_metrics(done: pd.DataFrame, row: pd.Series, table: SweepTable) -> dict[int, dict[str, float]]:
    """seed -> primary metric per task of the group's runs (runs of one seed that differ only in device or
    run_dir are averaged)."""
    sel = group_runs(done, row, table)
    cols = {t.name: metric_column(t.name, t.primary_metric) for t in table.tasks}
    return {int(seed): {name: float(g[c].mean()) if c in g else math.nan for name, c in cols.items()}
            for seed, g in sel.groupby("seed")}


def _add_paired(summary: pd.DataFrame, table: SweepTable, done: pd.DataFrame) -> None:
    """Every non-baseline group vs its baseline group, paired by seed: columns n_pairs and ``paired_column``s."""
    if not table.baseline or not table.tasks:
        return
    keys = [t.name for t in table.tasks] + [DELTA]
    values: dict[str, list] = {"n_pairs": []} | {paired_column(k, s, table): [] for k in keys for s in STATS}
    for (i, row), b in zip(summary.iterrows(), _matching_baseline(summary, table)):
        comparison = None
        if b is not None and b != i:
            comparison = compare(_seed_metrics(done, row, table), _seed_metrics(done, summary.loc[b], table),
                                 table.tasks)
            table.comparisons[row["group"]] = (summary.loc[b, "group"], comparison)
            if comparison.dropped:
                table.notes.append(f"{row['group']}: seed(s) {comparison.dropped} not paired (run by only one "
                                   f"of it and {summary.loc[b, 'group']}, or a change undefined)")
        values["n_pairs"].append(comparison.n if comparison else math.nan)
        for k in keys:
            e = comparison.estimates[k] if comparison else None
            stats = (e.mean, e.low, e.high, e.p_value, e.wilcoxon_p, e.significant) if e else (math.nan,) * 6
            for s, v in zip(STATS, stats):
                values[paired_column(k, s, table)].append(v)
    for column, v in values.items():
        summary[column] = v


# --- claims: a published statement "A is better than B", tested on paired seeds -------------------------


@dataclass
class ClaimResult:
    """One claim for one pair of groups (one per value of what the selectors leave open, e.g. label_setting)."""

    claim: str
    relation: str               # ">": A better than B; ">=": A at least as good as B
    group: str
    vs: str
    comparison: Comparison
    p_holm: float = math.nan    # the paired t-test's p, Holm-adjusted over every claim result of the sweep
    on: str | None = None       # a task: the claim is about its primary metric's relative change, not Δ_MTL

    @property
    def estimate(self) -> PairedEstimate:
        """The paired change the claim is judged on: Δ_MTL, or the ``on`` task's primary metric (%)."""
        return self.comparison.delta if self.on is None else self.comparison.estimates[self.on]

    @property
    def verdict(self) -> str:
        """From the paired interval of the change (Δ_MTL, or the ``on`` task's) of A vs B: above 0 supports both
        relations, below 0 contradicts them; an interval across 0 leaves ">" not shown and ">=" consistent (level)."""
        d = self.estimate
        if not d.enough:
            return f"undecided ({TOO_FEW})"
        if d.low > 0:
            return "supported (significantly better)"
        if d.high < 0:
            return "contradicted (significantly worse)"
        return "consistent (level, interval includes 0)" if self.relation == ">=" else "not shown (interval includes 0)"

    def line(self) -> str:
        holm_text = "" if math.isnan(self.p_holm) else f"; Holm-adjusted p={self.p_holm:.2g}"
        return (f"claim {self.claim}: {self.verdict} — "
                f"{verdict_line(self.group, self.vs, self.comparison, self.on)}{holm_text}")


def _selects(row: pd.Series, selector: dict[str, Any]) -> bool:
    return all(k in row and row[k] == _value_text(selector, k, row.get("method")) for k in selector)


def evaluate_claims(table: SweepTable, claims: list[dict[str, Any]]) -> list[ClaimResult]:
    """Each claim ``{name, group: {...}, vs: {...}, relation}``: every summary group the ``group`` selector picks,
    paired by seed with the group ``vs`` picks that agrees with it on every other parameter (so one result per
    label setting when the selectors leave it open). A selector picking no completed group gives a note."""
    s = table.summary
    if s.empty or not table.tasks:
        return []
    done = table.runs[table.runs["status"] == "completed"]
    out = []
    for claim in claims:
        name, relation, on = claim["name"], claim.get("relation", ">"), claim.get("on")
        if on is not None and on not in [t.name for t in table.tasks]:
            table.notes.append(f"claim {name}: on={on!r} is not a task of these runs ({[t.name for t in table.tasks]})")
            continue
        chosen = set(claim["group"]) | set(claim["vs"])
        # the label split follows the label setting: a claim across settings (full vs ratio:...) compares splits too
        others = [k for k in table.group_keys if k not in chosen and not (k == "label_split" and
                                                                           "label_setting" in chosen)]
        found = False
        for _, a in s[[_selects(r, claim["group"]) for _, r in s.iterrows()]].iterrows():
            for _, b in s[[_selects(r, claim["vs"]) and all(r[k] == a[k] for k in others)
                           for _, r in s.iterrows()]].iterrows():
                found = True
                out.append(ClaimResult(name, relation, a["group"], b["group"],
                                       compare(_seed_metrics(done, a, table), _seed_metrics(done, b, table),
                                               table.tasks), on=on))
        if not found:
            table.notes.append(f"claim {name}: no completed pair of groups matches group={claim['group']} "
                               f"vs={claim['vs']}")
    for result, p in zip(out, holm([r.estimate.p_value for r in out])):
        result.p_holm = p
    return out


# --- long frames for the figures (mtlwb.figures draws them) ---------------------------------------------
def learning_curves(sweep_dir: str | Path, table: SweepTable) -> pd.DataFrame:
    """Long frame (group, seed, epoch, split, task, value) of every completed run's history: its training loss
    (split "train": each task's supervised term, and "total") and, at each evaluated epoch, every task's primary
    metric on the validation ("val") and test ("test") splits — what shows whether a group over-fits (validation
    peaks, then falls)."""
    sweep_dir = Path(sweep_dir)
    primary = {t.name: t.primary_metric for t in table.tasks}
    rows = []
    for _, run in table.runs[table.runs["status"] == "completed"].iterrows():
        group = _label(pd.Series({k: run[f"param:{k}"] for k in table.varying}), table.varying)
        for h in read_record(sweep_dir / run["run_id"]).get("history", []):
            for task, value in h.get("train", {}).items():   # each task's supervised term, and "total"
                if task in primary or task == "total":
                    rows.append((group, run["seed"], h["epoch"], "train", task, value))
            for key, split in (("val", "val"), ("eval", "test")):
                for task, metrics in h.get(key, {}).items():
                    if task in primary and primary[task] in metrics:
                        rows.append((group, run["seed"], h["epoch"], split, task, metrics[primary[task]]))
    return pd.DataFrame(rows, columns=["group", "seed", "epoch", "split", "task", "value"])


def diagnostics_curves(sweep_dir: str | Path, table: SweepTable) -> pd.DataFrame:
    """Long frame (group, seed, epoch, task, measure, value) of every completed run's recorded diagnostics, per
    evaluated epoch (``mtlwb.diagnostics.history_frame``); empty when no run recorded them."""
    sweep_dir = Path(sweep_dir)
    frames = []
    for _, run in table.runs[table.runs["status"] == "completed"].iterrows():
        group = _label(pd.Series({k: run[f"param:{k}"] for k in table.varying}), table.varying)
        frame = diagnostics.history_frame(read_record(sweep_dir / run["run_id"]).get("history", []))
        frames.append(frame.assign(group=group, seed=run["seed"]))
    columns = ["group", "seed", "epoch", "task", "measure", "value"]
    return pd.concat(frames)[columns].reset_index(drop=True) if frames else pd.DataFrame(columns=columns)


def metrics_long(table: SweepTable) -> pd.DataFrame:
    """One row per (group, task): primary metric mean and std, for plotting."""
    rows = []
    for _, r in table.summary.iterrows():
        for t in table.tasks:
            col = metric_column(t.name, t.primary_metric)
            rows.append({"group": r["group"], "task": t.name, "metric": t.primary_metric,
                         "lower_is_better": t.lower_is_better, "mean": r[f"{col} mean"],
                         "std": r[f"{col} std"], "n_seeds": r["n_seeds"], "is_baseline": r["is_baseline"]})
    return pd.DataFrame(rows)
