"""Cost of the MTPSL and JTR regularizers alone as the number of tasks T grows from 2 to 8.

Tasks are synthetic depth-like ones (``TaskSpec("depth_k", "depth", 1, ...)``), predictions are fixed leaf tensors
(no backbone), so the time is the regularizer's forward + backward only: ``losses()`` with backward of the auxiliary
terms, minus the forward of the supervised terms ``losses()`` also computes (timed in the same run).

Label settings: JTR with onelabel (its joint network sees all T tasks at once, so its cost is linear in ΣC_t
whatever the labels); MTPSL with **full** labels, where every sample gives T(T−1) ordered pairs — the quadratic
worst case — and, for reference, onelabel, where a sample gives T−1 pairs; and full labels with a sparse
``task_prior`` (a chain: task k related to k ± 1 only), which keeps 2(T−1) of the T(T−1) pairs: the prior's cut of
the quadratic cost. Linear and quadratic least-squares fits
(numpy.polyfit) of ms vs T are reported with their residuals, and the ratio T=8 / T=2. Target: JTR's ratio ≤ 4.5.

Run as ``python benchmarks/bench_regularizers.py [--quick]``.
"""

from __future__ import annotations

from collections.abc import Callable

import common  # noqa: I001  (sets thread env vars and sys.path before torch/mtlwb load)
import numpy as np
import torch

from mtlwb.figures import export_figure
from mtlwb.figures.scaling import cost_vs_tasks
from mtlwb.methods import Refined, Step, build_method
from mtlwb.tasks import TaskSpec
from mtlwb.tasks.priors import parse_task_prior

HEIGHT, WIDTH, FEATURE_CHANNELS = 64, 80, 128
# (method, label setting, task prior): "chain" relates task k to k ± 1 only
CURVES = (("jtr", "onelabel", None), ("mtpsl", "full", None), ("mtpsl", "onelabel", None), ("mtpsl", "full", "chain"))


def depth_tasks(num_tasks: int) -> list[TaskSpec]:
    return [TaskSpec(f"depth_{k}", "depth", 1, "abs_err", True) for k in range(num_tasks)]


def chain_prior(num_tasks: int) -> torch.Tensor:
    """P [T, T]: 1 on the diagonal and between neighbours k, k + 1, 0 elsewhere (2(T−1) related ordered pairs)."""
    return parse_task_prior({f"depth_{k}-depth_{k + 1}": 1.0 for k in range(num_tasks - 1)},
                            [t.name for t in depth_tasks(num_tasks)])


def curve_label(setting: str, prior: str | None) -> str:
    return setting if prior is None else f"{setting}, {prior} prior"


def make_term_step(method_name: str, num_tasks: int, setting: str, batch: int, seed: int = 0,
                   prior: str | None = None) -> tuple[Callable[[], None], Callable[[], None], float]:
    """(regularizer step, supervised-forward step) closures on one fixed synthetic batch, and MTPSL's pairs per
    sample of that batch (counted by the method itself: what the prior leaves; 0 for JTR)."""
    torch.manual_seed(seed)
    tasks = depth_tasks(num_tasks)
    method = build_method(method_name, tasks, FEATURE_CHANNELS,
                          task_prior=chain_prior(num_tasks) if prior == "chain" else None)
    method.train()
    g = torch.Generator().manual_seed(seed)
    preds = {t.name: (torch.rand(batch, 1, HEIGHT, WIDTH, generator=g) * 5).requires_grad_() for t in tasks}
    targets = common.synthetic_targets(tasks, batch, HEIGHT, WIDTH, g)
    features = torch.randn(batch, FEATURE_CHANNELS, HEIGHT // 8, WIDTH // 8, generator=g)
    labelled = common.label_table(batch, num_tasks, setting)
    method.use_label_table(labelled)     # the batch is the run's label table: "full" is a fully labelled run
    step = Step(torch.zeros(batch, 3, HEIGHT, WIDTH), features, Refined({}), preds, targets, labelled)
    leaves = list(preds.values()) + list(method.parameters())

    def term() -> None:
        out = method.losses(step)
        aux = sum(out.auxiliary.values())
        aux.backward()
        for p in leaves:
            p.grad = None

    def supervised() -> None:
        with torch.no_grad():
            method.supervised_losses(step)

    pairs = len(method.pairs(labelled)) / batch if method_name == "mtpsl" else 0.0
    return term, supervised, pairs


def _fit(ts: np.ndarray, ms: np.ndarray, degree: int) -> tuple[np.ndarray, float]:
    coef = np.polyfit(ts, ms, degree)
    rms = float(np.sqrt(np.mean((np.polyval(coef, ts) - ms) ** 2)))
    return coef, rms


def run(quick: bool = False) -> list[dict]:
    """One row per (method, setting, T) with ms per step, plus one 'fit' row per curve."""
    common.pin_threads()
    batch = 4 if quick else 8
    repeats = 2 if quick else 5
    task_counts = (2, 4, 8) if quick else tuple(range(2, 9))
    rows: list[dict] = []
    for method_name, setting, prior in CURVES:
        times = []
        labels = curve_label(setting, prior)
        for T in task_counts:
            term, supervised, pairs = make_term_step(method_name, T, setting, batch, prior=prior)
            med = common.interleaved_medians({"term": term, "sup": supervised}, repeats, warmup=1)
            ms = 1000 * max(med["term"] - med["sup"], 0.0)
            rows.append({"kind": "point", "method": method_name, "labels": labels, "T": T, "batch": batch,
                         "pairs/sample": pairs, "ms/step": ms})
            times.append(ms)
        ts, ms_arr = np.array(task_counts, float), np.array(times)
        (b1, a1), rms1 = _fit(ts, ms_arr, 1)
        (c2, b2, a2), rms2 = _fit(ts, ms_arr, 2)
        rows.append({"kind": "fit", "method": method_name, "labels": labels, "batch": batch,
                     "linear": f"{a1:.1f} {b1:+.2f}·T", "linear rms": rms1,
                     "quadratic": f"{a2:.1f} {b2:+.2f}·T {c2:+.3f}·T²", "quadratic rms": rms2,
                     "ratio T8/T2": times[-1] / times[0] if times[0] > 0 else float("nan"),
                     "T range": f"{task_counts[0]}–{task_counts[-1]}"})
    return rows


def report(rows: list[dict]) -> str:
    points = [r for r in rows if r["kind"] == "point"]
    fits = [r for r in rows if r["kind"] == "fit"]
    curves = list(dict.fromkeys((r["method"], r["labels"]) for r in points))
    ts = sorted({r["T"] for r in points})
    wide = []
    for m, s in curves:
        row = {"regularizer": m, "labels": s}
        row.update({f"T={t}": next(r["ms/step"] for r in points if (r["method"], r["labels"], r["T"]) == (m, s, t))
                    for t in ts})
        wide.append(row)
    lines = [f"ms per step of the regularizer alone (forward + backward), batch {points[0]['batch']}, "
             f"{HEIGHT}×{WIDTH}, depth-like tasks:", "", common.table(wide), "",
             common.table(fits, ["method", "labels", "linear", "linear rms", "quadratic", "quadratic rms",
                                 "ratio T8/T2"]), ""]
    for f in fits:
        if f["method"] == "jtr":
            lines.append(common.check("JTR ratio T=8/T=2 ≤ 4.5", f["ratio T8/T2"] <= 4.5, f"{f['ratio T8/T2']:.2f}"))
    lines.append("- MTPSL's curve uses full labels: that is where T(T−1) ordered pairs per sample arise "
                 "(onelabel gives T−1 per sample).")
    full = next((f for f in fits if (f["method"], f["labels"]) == ("mtpsl", "full")), None)
    chain = next((f for f in fits if (f["method"], f["labels"]) == ("mtpsl", curve_label("full", "chain"))), None)
    if full and chain:
        t_max = max(ts)
        ms = {f["labels"]: next(r["ms/step"] for r in points if (r["method"], r["labels"], r["T"]) ==
                                 ("mtpsl", f["labels"], t_max)) for f in (full, chain)}
        lines.append(f"- a chain task_prior (task k related to k ± 1) keeps 2(T−1) of the T(T−1) pairs: at T={t_max} "
                     f"MTPSL costs {ms[chain['labels']]:.0f} ms instead of {ms[full['labels']]:.0f} ms per step "
                     f"({ms[full['labels']] / max(ms[chain['labels']], 1e-9):.1f}× less); ratio T8/T2 "
                     f"{chain['ratio T8/T2']:.2f} vs {full['ratio T8/T2']:.2f}.")
    fig = cost_vs_tasks(points, "Regularizer cost vs number of tasks (forward + backward, one thread)")
    out = export_figure(fig, common.ROOT / "reports" / "benchmarks", "regularizer_cost")
    lines.append(f"- figure (measured points, linear and quadratic fits): `{out['html'].relative_to(common.ROOT)}`"
                 + (f", `{out['png'].relative_to(common.ROOT)}`" if out["png"] else ""))
    return "\n".join(lines)


if __name__ == "__main__":
    common.main(__doc__, run, report)
