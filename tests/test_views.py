"""Augmented views for multi-view protocols (MTPSL 2 views, JTR 3 views + photometric RandAugment)."""

from __future__ import annotations

import pytest
import torch

from mtlwb.data.randaugment import OPS, RandAugmentOptions, apply_op, level_of, rand_augment
from mtlwb.data.views import ViewSpec, make_views
from mtlwb.tasks import DEPTH, NORMAL, semantic

TASKS = [semantic(4), DEPTH, NORMAL]


def _batch(b=3, h=20, w=24):
    g = torch.Generator().manual_seed(0)
    return {"image": torch.rand(b, 3, h, w, generator=g),
            "semantic": torch.randint(-1, 4, (b, h, w), generator=g),
            "depth": torch.rand(b, 1, h, w, generator=g) * 4 + 0.5,
            "normal": torch.nn.functional.normalize(torch.randn(b, 3, h, w, generator=g), dim=1),
            "index": torch.arange(b)}


def test_extra_views_are_scale_crops_of_view_zero_and_replay_by_seed():
    batch = _batch()
    views = make_views(batch, TASKS, ViewSpec(extra=2), torch.Generator().manual_seed(4))
    again = make_views(batch, TASKS, ViewSpec(extra=2), torch.Generator().manual_seed(4))
    assert len(views) == 3 and views[0] is batch
    for v, w in zip(views[1:], again[1:]):
        assert all(torch.equal(v[k], w[k]) for k in ("image", "semantic", "depth", "normal"))
        assert v["image"].shape == batch["image"].shape and torch.equal(v["index"], batch["index"])
        # labels keep their values (nearest resize), depth divided by a scale in {1, 1.2, 1.5}
        assert set(v["semantic"].unique().tolist()) <= set(batch["semantic"].unique().tolist())
        assert v["depth"].max() <= batch["depth"].max() + 1e-6
    assert not torch.equal(views[1]["image"], views[2]["image"])        # independent crops


def test_randaugment_touches_only_images_of_every_view():
    batch = _batch()
    views = make_views(batch, TASKS, ViewSpec(extra=1, photometric="randaugment"), torch.Generator().manual_seed(1))
    assert not torch.equal(views[0]["image"], batch["image"])              # view 0 augmented too
    assert torch.equal(views[0]["depth"], batch["depth"]) and torch.equal(views[0]["semantic"], batch["semantic"])
    assert all(0.0 <= float(v["image"].min()) and float(v["image"].max()) <= 1.0 for v in views)


def test_photometric_ops_by_hand():
    x = torch.tensor([0.1, 0.5, 0.9]).view(3, 1, 1).expand(3, 2, 2).clone()
    torch.testing.assert_close(apply_op(x, "Brightness", 0.5), (x * 1.5).clamp(0, 1))
    gray = 0.2989 * 0.1 + 0.587 * 0.5 + 0.114 * 0.9
    torch.testing.assert_close(apply_op(x, "Color", -1.0), torch.full_like(x, gray))     # factor 0: grayscale
    assert torch.equal(apply_op(x, "Identity", 0.0), x)
    sol = apply_op(x, "Solarize", 0.6)                                      # pixels above 0.6 inverted
    torch.testing.assert_close(sol[2], 1.0 - x[2])
    torch.testing.assert_close(sol[:2], x[:2])
    auto = apply_op(torch.rand(3, 5, 5) * 0.5 + 0.2, "AutoContrast", 0.0)
    assert torch.allclose(auto.amin(dim=(1, 2)), torch.zeros(3))
    assert torch.allclose(auto.amax(dim=(1, 2)), torch.ones(3))
    assert level_of("Posterize", 0, 31) == 8 and level_of("Posterize", 30, 31) == 4
    assert level_of("Brightness", 30, 31) == pytest.approx(0.9) and level_of("Solarize", 0, 31) == 1.0


def test_randaugment_is_deterministic_and_draws_only_listed_ops():
    img = torch.rand(3, 8, 8)
    a = rand_augment(img, torch.Generator().manual_seed(7))
    b = rand_augment(img, torch.Generator().manual_seed(7))
    assert torch.equal(a, b)
    assert "Rotate" not in OPS and "ShearX" not in OPS                      # photometric only: labels stay aligned
    with pytest.raises(ValueError, match="randaugment.magnitude=40"):
        RandAugmentOptions(magnitude=40)


def test_view_spec_is_validated():
    with pytest.raises(ValueError, match="photometric='jitter'"):
        ViewSpec(photometric="jitter")


def test_split_views_slices_each_views_rows_and_shares_labelled():
    from mtlwb.methods.base import Refined, Step, split_views

    B, count = 2, 3
    g = torch.Generator().manual_seed(0)

    def rows(*shape):
        return torch.randn(count * B, *shape, generator=g)

    labelled = torch.tensor([[1, 0], [0, 1]])
    extras = {"per_sample": rows(4), "scalar": torch.tensor(2.0), "per_batch": torch.randn(B, 4, generator=g),
              "other": [1, 2]}
    step = Step(rows(3, 8, 8), rows(5, 2, 2), Refined({"a": rows(5, 2, 2)}, extras), {"a": rows(1, 8, 8)},
                {"a": rows(1, 8, 8)}, labelled, rows(7, 1, 1))

    def per_sample(s: Step) -> list[torch.Tensor]:
        return [s.images, s.features, s.bottleneck, s.refined.task_features["a"], s.refined.extras["per_sample"],
                s.predictions["a"], s.targets["a"]]

    first = split_views(step, count)
    assert len(first.views) == count - 1 and all(v.views == [] for v in first.views)
    for v, view in enumerate([first, *first.views]):
        assert all(torch.equal(got, full[v * B:(v + 1) * B]) for got, full in zip(per_sample(view), per_sample(step)))
        assert view.labelled is labelled                                    # one [B, T] table for every view
        assert all(view.refined.extras[k] is extras[k] for k in ("scalar", "per_batch", "other"))   # kept whole
    assert split_views(step, 1) is step
    no_bottleneck = split_views(Step(*per_sample(step)[:2], step.refined, step.predictions, step.targets, labelled),
                                count)
    assert no_bottleneck.bottleneck is None and all(v.bottleneck is None for v in no_bottleneck.views)


def _two_surfaces(h: int = 20, w: int = 24) -> dict:
    """Normals facing +x on the left half, +y on the right, a zero (invalid) block in the middle."""
    normal = torch.zeros(3, h, w)
    normal[0, :, : w // 2] = 1.0
    normal[1, :, w // 2:] = 1.0
    normal[:, 8:12, 4:8] = 0.0
    return {"image": torch.rand(3, h, w), "normal": normal}


@pytest.mark.parametrize("mode", ["bilinear", "nearest"])
def test_normal_crop_mode_bilinear_as_the_references_nearest_keeps_unit_normals(mode):
    from mtlwb.data.augment import AugmentOptions, augment_sample

    options = AugmentOptions(scales=(1.5,), flip=False, normal_mode=mode)
    item = _two_surfaces()
    out = augment_sample(item, [NORMAL], torch.Generator().manual_seed(0), options)["normal"]
    length = out.norm(dim=0)
    if mode == "nearest":      # every normal is still a unit vector or an invalid zero
        assert torch.all(((length - 1.0).abs() < 1e-6) | (length == 0))
    else:                      # between the surfaces and around the hole the references' crop shortens normals
        assert ((length > 1e-3) & (length < 0.99)).any()
        # align_corners=True, as MTPSL's and JTR's RandomScaleCrop: a ramp over the 16 cropped columns is
        # stretched to span them exactly over the 24 output columns (15/23 per column; align_corners=False: 1/1.5)
        ramp = {"image": item["image"], "normal": torch.arange(24.0).expand(3, 20, 24).clone()}
        out = augment_sample(ramp, [NORMAL], torch.Generator().manual_seed(0), options)["normal"]
        assert torch.allclose(out[0, :, 1:] - out[0, :, :-1], torch.full((20, 23), 15 / 23))
    with pytest.raises(ValueError, match=r"normal_crop='area': allowed \['bilinear', 'nearest'\]"):
        AugmentOptions(normal_mode="area")


def test_extra_views_crop_normals_as_asked():
    batch = _batch()
    lengths = {}
    for mode in ("bilinear", "nearest"):
        views = make_views(batch, TASKS, ViewSpec(extra=2), torch.Generator().manual_seed(4), normal_mode=mode)
        lengths[mode] = torch.cat([v["normal"].norm(dim=1).flatten() for v in views[1:]])
    assert torch.allclose(lengths["nearest"], torch.ones_like(lengths["nearest"]), atol=1e-5)
    assert lengths["bilinear"].min() < 0.9           # random unit normals interpolated: shorter


def _jtr_three_view_step(backbone: str, split_heads: bool):
    """One trainer-path step (views concatenated, one backbone pass, ``split_views``, JTR losses, backward) in
    float64; returns (loss terms, gradients of every parameter, [(rows, graph?)] of each call of the first head)."""
    import mtlwb.methods.jtr  # noqa: F401  (registers)
    from mtlwb.methods import Step, build_method, forward_step, split_views
    from mtlwb.models import MultiTaskNet

    torch.manual_seed(0)
    model = MultiTaskNet(TASKS, backbone).double().train()
    method = build_method("jtr", TASKS, model.feature_channels, {"views": 3, "fidelity": "published_code"}).double()
    calls = []
    next(iter(model.heads.values())).register_forward_hook(
        lambda module, args, out: calls.append((args[0].shape[0], torch.is_grad_enabled())))
    batch = {k: v.double() if v.is_floating_point() else v for k, v in _batch(b=2, h=32, w=32).items()}
    views = make_views(batch, TASKS, method.view_spec, torch.Generator().manual_seed(1), normal_mode="bilinear")
    images = torch.cat([v["image"] for v in views])
    features, refined, preds, bottleneck = forward_step(model, method, images, views=3 if split_heads else 1)
    targets = {t.name: torch.cat([v[t.name] for v in views]) for t in TASKS}
    step = split_views(Step(images, features, refined, preds, targets, torch.tensor([[1, 0, 0], [0, 1, 1]]),
                            bottleneck), 3)
    torch.manual_seed(5)                                              # the Gumbel draws
    terms = method.losses(step).all()
    sum(terms.values()).backward()
    params = list(model.parameters()) + list(method.parameters())
    return terms, [torch.zeros_like(p) if p.grad is None else p.grad for p in params], calls


def test_a_view_read_only_detached_runs_its_heads_without_graph_and_changes_nothing():
    """JTR's view 2 feeds only detached inputs of the joint network: SegNet's heads (no batch statistics) skip its
    graph; losses and every gradient are those of the one-graph pass (float64), since the backbone still sees all
    views in one BatchNorm batch."""
    terms, grads, calls = _jtr_three_view_step("segnet", split_heads=True)
    ref_terms, ref_grads, ref_calls = _jtr_three_view_step("segnet", split_heads=False)
    assert calls == [(4, True), (2, False)] and ref_calls == [(6, True)]      # views 0-1 with a graph, view 2 without
    assert terms.keys() == ref_terms.keys()
    for k in terms:
        torch.testing.assert_close(terms[k], ref_terms[k], rtol=1e-12, atol=1e-12)
    for a, b in zip(grads, ref_grads):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_heads_with_batch_statistics_keep_one_graph_for_all_views():
    """A head with BatchNorm (resnet_small's) normalizes over every row it sees: splitting its call would change the
    numbers, so the detached view's predictions keep their graph."""
    _, _, calls = _jtr_three_view_step("resnet_small", split_heads=True)
    assert calls == [(6, True)]
