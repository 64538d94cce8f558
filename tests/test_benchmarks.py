"""Benchmark reports (not timings): fits, checks and the regularizer-cost figure from given measurements."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import bench_regularizers  # noqa: E402
import common  # noqa: E402

from mtlwb.figures.scaling import cost_vs_tasks  # noqa: E402


def _points(method: str, labels: str, cost) -> list[dict]:
    return [{"kind": "point", "method": method, "labels": labels, "T": t, "batch": 8, "pairs/sample": 0,
             "ms/step": cost(t)} for t in range(2, 9)]


def test_regularizer_report_fits_checks_and_draws(tmp_path, monkeypatch):
    monkeypatch.setattr(common, "ROOT", tmp_path)
    rows = _points("jtr", "onelabel", lambda t: 30 + 2 * t) + _points("mtpsl", "full", lambda t: 5 * t * (t - 1))
    rows += [{"kind": "fit", "method": "jtr", "labels": "onelabel", "batch": 8, "linear": "", "linear rms": 0.0,
              "quadratic": "", "quadratic rms": 0.0, "ratio T8/T2": 46 / 34, "T range": "2–8"},
             {"kind": "fit", "method": "mtpsl", "labels": "full", "batch": 8, "linear": "", "linear rms": 0.0,
              "quadratic": "", "quadratic rms": 0.0, "ratio T8/T2": 28.0, "T range": "2–8"}]
    text = bench_regularizers.report(rows)
    assert "- [x] JTR ratio T=8/T=2 ≤ 4.5: 1.35" in text
    assert (tmp_path / "reports" / "benchmarks" / "regularizer_cost.html").stat().st_size > 100_000  # plotly.js
    fig = cost_vs_tasks([r for r in rows if r["kind"] == "point"])
    quadratic = next(tr for tr in fig.data if tr.name == "mtpsl (full) fit deg 2")
    assert quadratic.y[-1] == pytest.approx(5 * 8 * 7) and quadratic.y[0] == pytest.approx(5 * 2 * 1)
    assert len(fig.data) == 6                         # per curve: points, linear fit, quadratic fit


def test_mtpsl_chain_prior_curve_counts_fewer_pairs_and_is_reported(tmp_path, monkeypatch):
    for T in (3, 5):
        *_, full = bench_regularizers.make_term_step("mtpsl", T, "full", batch=2)
        *_, chain = bench_regularizers.make_term_step("mtpsl", T, "full", batch=2, prior="chain")
        assert (full, chain) == (T * (T - 1), 2 * (T - 1))
    monkeypatch.setattr(common, "ROOT", tmp_path)
    chain_label = bench_regularizers.curve_label("full", "chain")
    rows = _points("mtpsl", "full", lambda t: 5 * t * (t - 1)) + _points("mtpsl", chain_label, lambda t: 10 * (t - 1))
    rows += [{"kind": "fit", "method": "mtpsl", "labels": labels, "batch": 8, "linear": "", "linear rms": 0.0,
              "quadratic": "", "quadratic rms": 0.0, "ratio T8/T2": ratio, "T range": "2–8"}
             for labels, ratio in (("full", 28.0), (chain_label, 7.0))]
    text = bench_regularizers.report(rows)
    assert "at T=8 MTPSL costs 70 ms instead of 280 ms per step (4.0× less); ratio T8/T2 7.00 vs 28.00" in text
