"""Paired statistics over seeds, against intervals and p-values computed by hand (explicit formulas)."""

from __future__ import annotations

import math

import pytest

from mtlwb.analysis.stats import DELTA, TOO_FEW, compare, paired_estimate, relative_change, verdict_line
from mtlwb.tasks import TaskSpec

T2 = 4.302653       # t_{0.975, 2}
T4 = 2.776445       # t_{0.975, 4}
TASKS = [TaskSpec("semantic", "segmentation", 7, "miou", False), TaskSpec("depth", "depth", 1, "abs_err", True)]


def _sd(xs):
    m = sum(xs) / len(xs)
    return math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1))


def _p_df2(t):
    """Two-sided p of Student's t with 2 d.o.f.: F(t) = 1/2 + t / (2 sqrt(2 + t²))."""
    return 1 - abs(t) / math.sqrt(2 + t * t)


def _p_df4(t):
    """Two-sided p with 4 d.o.f.: F(t) = 1/2 + 3x/4 − x³/4, x = t / sqrt(t² + 4)."""
    x = abs(t) / math.sqrt(t * t + 4)
    return 2 * (0.5 - 0.75 * x + 0.25 * x ** 3)


def test_interval_and_p_value_of_three_pairs():
    d = [1.0, 2.0, 6.0]
    e = paired_estimate(d)
    sd = math.sqrt(7.0)                           # deviations -2, -1, 3: (4 + 1 + 9) / 2 = 7
    assert e.n == 3 and e.mean == pytest.approx(3.0)
    assert e.low == pytest.approx(3.0 - T2 * sd / math.sqrt(3), abs=1e-5)
    assert e.high == pytest.approx(3.0 + T2 * sd / math.sqrt(3), abs=1e-5)
    assert e.p_value == pytest.approx(_p_df2(3.0 / (sd / math.sqrt(3))), rel=1e-9)
    assert e.wilcoxon_p == pytest.approx(0.25)    # exact: all 3 signs positive, 2 · (1/2)³
    assert not e.significant and e.mark == "" and e.verdict == "not significant"


def test_interval_and_p_value_of_five_pairs():
    d = [0.5, 1.5, 1.0, 2.0, 0.0]
    e = paired_estimate(d)
    sd = _sd(d)
    assert sd == pytest.approx(math.sqrt(2.5 / 4))
    half = T4 * sd / math.sqrt(5)
    assert (e.low, e.high) == (pytest.approx(1.0 - half, abs=1e-5), pytest.approx(1.0 + half, abs=1e-5))
    assert e.p_value == pytest.approx(_p_df4(1.0 / (sd / math.sqrt(5))), rel=1e-9)
    assert e.significant and e.mark == "*" and e.verdict == "↑ significant"
    assert e.text() == f"+1.00 [{1 - half:+.2f}, {1 + half:+.2f}] *"
    worse = paired_estimate([-x for x in d])
    assert worse.significant and worse.verdict == "↓ significant" and worse.high == pytest.approx(-1.0 + half, abs=1e-5)


def test_fewer_than_three_pairs_is_n_too_small():
    e = paired_estimate([1.0, 3.0])
    assert e.mean == pytest.approx(2.0) and math.isnan(e.low) and math.isnan(e.p_value)
    assert not e.significant and e.verdict == TOO_FEW and TOO_FEW in e.text() and "n=2" in e.text()


def test_equal_differences_have_a_zero_width_interval():
    e = paired_estimate([2.0, 2.0, 2.0])
    assert (e.low, e.high, e.p_value) == (2.0, 2.0, 0.0) and e.significant
    with pytest.raises(ValueError, match="confidence"):
        paired_estimate([1.0, 2.0, 3.0], confidence=95)
    with pytest.raises(ValueError, match="finite"):
        paired_estimate([1.0, math.nan, 3.0])


def _metrics(miou, abs_err):
    return {"semantic": miou, "depth": abs_err}


def test_compare_pairs_by_seed_and_drops_unpaired_seeds():
    baseline = {0: _metrics(0.5, 1.0), 1: _metrics(0.5, 1.0), 2: _metrics(0.5, 1.0), 7: _metrics(0.4, 1.0)}
    group = {2: _metrics(0.53, 0.97), 0: _metrics(0.505, 0.98), 1: _metrics(0.51, 0.975), 5: _metrics(0.9, 0.1)}
    c = compare(group, baseline, TASKS)
    assert c.seeds == [0, 1, 2] and c.dropped == [5, 7] and c.n == 3
    # per seed, % of the baseline, + = better: semantic +1, +2, +6; depth (lower is better) +2, +2.5, +3
    assert c.changes["semantic"].tolist() == pytest.approx([1.0, 2.0, 6.0])
    assert c.changes["depth"].tolist() == pytest.approx([2.0, 2.5, 3.0])
    assert c.changes[DELTA].tolist() == pytest.approx([1.5, 2.25, 4.5])
    depth = c.estimates["depth"]                   # mean 2.5, sd 0.5
    assert (depth.low, depth.high) == (pytest.approx(2.5 - T2 * 0.5 / math.sqrt(3), abs=1e-5),
                                       pytest.approx(2.5 + T2 * 0.5 / math.sqrt(3), abs=1e-5))
    assert depth.significant and not c.estimates["semantic"].significant
    sd = _sd([1.5, 2.25, 4.5])
    assert c.delta.mean == pytest.approx(2.75)
    assert c.delta.p_value == pytest.approx(_p_df2(2.75 / (sd / math.sqrt(3))), rel=1e-6)
    line = verdict_line("jtr", "supervised", c)
    assert line.startswith("jtr vs supervised: Δ_MTL +2.8 % [") and "(n=3, p=" in line
    assert line.endswith(": not significant")


def test_compare_with_too_few_common_seeds():
    c = compare({0: _metrics(0.5, 1.0), 1: _metrics(0.6, 1.0)}, {1: _metrics(0.5, 1.0), 2: _metrics(0.5, 1.0)},
                TASKS)
    assert c.seeds == [1] and c.dropped == [0, 2] and c.delta.verdict == TOO_FEW
    assert c.delta.mean == pytest.approx(10.0)      # (+20 % semantic + 0 % depth) / 2
    assert TOO_FEW in verdict_line("a", "b", c)
    assert "nothing to pair" in verdict_line("a", "b", compare({0: _metrics(0.5, 1.0)}, {}, TASKS))


def test_relative_change_is_signed_so_that_positive_is_better():
    assert relative_change(0.55, 0.5, lower_is_better=False) == pytest.approx(10.0)
    assert relative_change(0.9, 1.0, lower_is_better=True) == pytest.approx(10.0)
    assert math.isnan(relative_change(0.3, 0.0, lower_is_better=False))


def test_holm_adjustment_by_hand():
    from mtlwb.analysis.stats import holm

    # sorted 0.01, 0.02, 0.04 of 3 tests: 3·0.01 = 0.03, max(0.03, 2·0.02) = 0.04, max(0.04, 1·0.04) = 0.04
    assert holm([0.04, 0.01, math.nan, 0.02]) == pytest.approx([0.04, 0.03, math.nan, 0.04], nan_ok=True)
    assert holm([0.6, 0.5]) == pytest.approx([1.0, 1.0])            # capped at 1, monotone
    assert holm([]) == []
