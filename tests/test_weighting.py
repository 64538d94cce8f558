"""Loss-weighting schemes: values and gradients against hand-derived numbers."""

from __future__ import annotations

import math

import pytest
import torch

from mtlwb.objectives.weighting import DWA, WEIGHTINGS, Equal, Uncertainty, build_weighting

NAMES = ["semantic", "depth", "normal"]


def losses(values: list[float], grad: bool = False) -> dict[str, torch.Tensor]:
    return {n: torch.tensor(v, requires_grad=grad) for n, v in zip(NAMES, values, strict=True)}


def test_equal_sums_and_skips_inactive():
    w = Equal(NAMES)
    assert w.combine(losses([1.0, 2.0, 3.5])).item() == pytest.approx(6.5)
    assert w.combine(losses([1.0, 2.0, 3.5]), active={"depth": False}).item() == pytest.approx(4.5)
    assert w.weights() == {"semantic": 1.0, "depth": 1.0, "normal": 1.0}


def test_all_inactive_is_attached_zero():
    ls = losses([1.0, 2.0, 3.0], grad=True)
    out = Equal(NAMES).combine(ls, active=dict.fromkeys(NAMES, False))
    assert out.item() == 0.0
    out.backward()
    assert all(t.grad.item() == 0.0 for t in ls.values())


def test_combine_rejects_wrong_task_set():
    with pytest.raises(ValueError, match="normal"):
        Equal(NAMES).combine({"semantic": torch.tensor(1.0), "depth": torch.tensor(1.0)})
    with pytest.raises(ValueError, match="bogus"):
        Equal(NAMES).combine(losses([1.0, 1.0, 1.0]), active={"bogus": False})


def test_uncertainty_value_and_gradient():
    w = Uncertainty(NAMES)
    with torch.no_grad():
        w.log_vars.copy_(torch.tensor([0.0, math.log(2.0), -1.0]))
    # L = Σ exp(-s) L_t + s with s = (0, ln2, -1), L = (1, 4, 2):
    #   1*1 + 0  +  (1/2)*4 + ln2  +  e*2 - 1  = 2 + ln2 + 2e
    # dL/ds_t = 1 - exp(-s_t) L_t = (1 - 1, 1 - 2, 1 - 2e) = (0, -1, 1 - 2e)
    ls = losses([1.0, 4.0, 2.0], grad=True)
    total = w.combine(ls)
    assert total.item() == pytest.approx(2 + math.log(2) + 2 * math.e, rel=1e-6)
    total.backward()
    assert w.log_vars.grad.tolist() == pytest.approx([0.0, -1.0, 1 - 2 * math.e], rel=1e-6)
    # dL/dL_t = exp(-s_t) = the logged weight
    assert ls["depth"].grad.item() == pytest.approx(0.5)
    assert w.weights()["normal"] == pytest.approx(math.e, rel=1e-6)


def test_uncertainty_inactive_task_gets_no_gradient():
    w = Uncertainty(NAMES)
    total = w.combine(losses([1.0, 0.0, 3.0]), active={"depth": False})
    total.backward()
    # s = 0: grads 1 - L_t -> semantic 0, normal -2 ; depth untouched
    assert w.log_vars.grad.tolist() == pytest.approx([0.0, 0.0, -2.0])
    assert list(dict(w.named_parameters())) == ["log_vars"]


def test_dwa_weights_hand_computed():
    w = DWA(NAMES)
    ones = {"semantic": 1.0, "depth": 1.0, "normal": 1.0}
    w.epoch_end({"semantic": 2.0, "depth": 1.0, "normal": 4.0})
    assert w.weights() == ones  # one epoch finished: still 1
    w.epoch_end({"semantic": 1.0, "depth": 1.0, "normal": 6.0})
    # r = (1/2, 1/1, 6/4) = (0.5, 1, 1.5) ; r/τ = (0.25, 0.5, 0.75) with τ = 2
    # softmax = e^(0.25, 0.5, 0.75) / Σ ; Σ = 1.2840254 + 1.6487213 + 2.1170000 = 5.0497467
    # w = 3 * (0.2542750, 0.3264958, 0.4192292) = (0.7628251, 0.9794874, 1.2576876)
    got = w.weights()
    assert [got[n] for n in NAMES] == pytest.approx([0.7628251, 0.9794874, 1.2576876], abs=1e-6)
    assert sum(got.values()) == pytest.approx(3.0)
    total = w.combine(losses([1.0, 1.0, 1.0]))
    assert total.item() == pytest.approx(3.0, rel=1e-6)


def test_dwa_zero_previous_loss_counts_as_ratio_one():
    w = DWA(["a", "b"])
    w.epoch_end({"a": 0.0, "b": 1.0})
    w.epoch_end({"a": 5.0, "b": 1.0})
    # both ratios 1 -> equal weights 1
    assert w.weights() == pytest.approx({"a": 1.0, "b": 1.0})


def test_dwa_state_dict_round_trip_resumes_history():
    w = DWA(NAMES)
    w.epoch_end({"semantic": 2.0, "depth": 1.0, "normal": 4.0})
    w.epoch_end({"semantic": 1.0, "depth": 1.0, "normal": 6.0})
    restored = DWA(NAMES)
    restored.load_state_dict(w.state_dict())
    assert restored.weights() == pytest.approx(w.weights())
    # Next epoch must use the restored e-1 losses as its e-2.
    nxt = {"semantic": 1.0, "depth": 0.5, "normal": 3.0}
    w.epoch_end(nxt)
    restored.epoch_end(nxt)
    assert restored.weights() == pytest.approx(w.weights())


def test_uncertainty_state_dict_round_trip():
    w = Uncertainty(NAMES)
    with torch.no_grad():
        w.log_vars.copy_(torch.tensor([0.1, 0.2, 0.3]))
    restored = Uncertainty(NAMES)
    restored.load_state_dict(w.state_dict())
    assert restored.weights() == pytest.approx(w.weights())


def test_build_weighting():
    assert set(WEIGHTINGS) == {"equal", "uncertainty", "dwa"}
    assert isinstance(build_weighting("dwa", NAMES), DWA)
    with pytest.raises(ValueError, match=r"weighting='x': allowed \['dwa', 'equal', 'uncertainty'\]"):
        build_weighting("x", NAMES)
    with pytest.raises(ValueError, match="duplicates"):
        Equal(["a", "a"])
