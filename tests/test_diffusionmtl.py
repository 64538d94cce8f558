"""DiffusionMTL (mtlwb/methods/diffusionmtl.py): its defining properties, the released loss, the published layout's
parameter count, the multi-scale backbone it reads, and gradient clipping (its config clips at 10)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import mtlwb
from mtlwb.config import ExperimentConfig
from mtlwb.methods import build_method, forward_step
from mtlwb.methods.base import Step
from mtlwb.methods.diffusionmtl import DiffusionMTLOptions
from mtlwb.methods.diffusionmtl_net import DiffusionSchedule
from mtlwb.models import MultiTaskNet
from mtlwb.models.resnet import resnet18, resnet18_multiscale
from mtlwb.objectives.losses import task_loss
from mtlwb.tasks import make_tasks
from tests.helpers import steps

SIZE = 32
DENSE = ["semantic", "depth", "normal"]
MIXED = ["semantic", "depth", "normal", "dominant_class", "num_objects"]

# counted with the public code (prismformore/DiffusionMTL get_model(p), ResNet-18, sum of p.numel()), outside the
# project: the whole DiffusionNet, and its ResNet-18 backbone (no fc)
PUBLIC_COUNTS = {"pascal_context": (["semantic", "parts", "saliency", "normal", "edge"], 21, 132_913_284),
                 "nyud": (DENSE, 40, 94_683_288),            # NYUD-v2 as ATRC prepared it, 40 classes
                 "nyuv2": (DENSE, 13, 94_531_170)}           # the code's own NYUD setting: 13 classes ("mtan")
PUBLIC_BACKBONE = 11_176_512


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def setup(names=DENSE, options=None, classes=5, dtype=torch.float32):
    torch.manual_seed(0)
    tasks = make_tasks(names, classes)
    model = MultiTaskNet(tasks, "resnet_small", heads=False).to(dtype)
    method = build_method("diffusionmtl", tasks, model.feature_channels, options).to(dtype)
    return tasks, model, method


def train_step(tasks, model, method, labelled, seed=0, dtype=torch.float32) -> Step:
    """A training-mode forward pass on random images, with random targets from ``steps.make_step``."""
    base = steps.make_step(tasks, labelled, seed=seed, size=SIZE, dtype=dtype)
    images = torch.rand(labelled.shape[0], 3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed)).to(dtype)
    model.train()
    method.train()
    features, refined, preds, _ = forward_step(model, method, images)
    targets = {k: v.detach() for k, v in base.targets.items()}
    return Step(images, features, refined, preds, targets, labelled)


def count_denoiser_calls(method, monkeypatch) -> list[tuple[str, int, list[int]]]:
    """(task, rows, timesteps) of every denoiser call."""
    calls = []
    original = type(method.denoiser).forward

    def spy(self, task, x, s, condition):
        calls.append((task, x.shape[0], sorted(set(s.tolist()))))
        return original(self, task, x, s, condition)

    monkeypatch.setattr(type(method.denoiser), "forward", spy)
    return calls


# --- the published layout ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("dataset", list(PUBLIC_COUNTS))
def test_reference_layout_has_the_public_models_parameter_count(dataset):
    names, classes, public = PUBLIC_COUNTS[dataset]
    tasks = make_tasks(names, classes)
    model = MultiTaskNet(tasks, "resnet18_multiscale", heads=False)
    method = build_method("diffusionmtl", tasks, model.feature_channels, {"arch": "reference"})
    assert n_params(model) == PUBLIC_BACKBONE and model.feature_channels == 960
    assert n_params(model) + n_params(method) == public
    assert n_params(build_method("diffusionmtl", tasks, 960)) < public // 50          # compact stays the default


def test_multiscale_backbone_concatenates_every_stage_at_stride_8(tmp_path):
    torch.manual_seed(0)
    net = resnet18_multiscale().eval()
    x = torch.rand(2, 3, 64, 96)
    with torch.no_grad():
        out = net(x)
        stem = net.maxpool(net.relu(net.bn1(net.conv1(x))))
        first = net.layer1(stem)                                               # stride 4
        deepest = net.layer4(net.layer3(net.layer2(first)))                    # stride 32, not dilated
    assert out.shape == (2, 960, 8, 12) and deepest.shape[-2:] == (2, 3)
    torch.testing.assert_close(out[:, :64], F.interpolate(first, size=(8, 12), mode="bilinear", align_corners=False))
    torch.testing.assert_close(out[:, -512:], F.interpolate(deepest, size=(8, 12), mode="bilinear",
                                                            align_corners=False))
    # torchvision's layout: ResNet-18 ImageNet weights load unchanged
    path = tmp_path / "r18.pt"
    torch.save(resnet18().state_dict(), path)
    MultiTaskNet(make_tasks(DENSE, 13), "resnet18_multiscale", backbone_weights=str(path), heads=False)


def test_the_model_has_no_heads_and_predictions_come_from_the_method(tiny_config):
    exp = mtlwb.build_experiment(tiny_config(method="diffusionmtl"))
    assert len(exp.model.heads) == 0 and exp.method.owns_heads
    with pytest.raises(RuntimeError, match="without heads"):
        exp.model.decode({}, (8, 8))
    exp.model.eval()
    exp.method.eval()
    with torch.no_grad():
        _, _, preds, _ = forward_step(exp.model, exp.method, torch.rand(2, 3, 32, 40))
    classes = exp.tasks[0].channels
    assert {k: tuple(v.shape) for k, v in preds.items()} == {"semantic": (2, classes, 32, 40),
                                                             "depth": (2, 1, 32, 40), "normal": (2, 3, 32, 40)}
    torch.testing.assert_close(preds["normal"].norm(dim=1), torch.ones(2, 32, 40))


# --- the defining properties ----------------------------------------------------------------------------------------

def test_unlabelled_tasks_never_supervise_the_denoiser(monkeypatch):
    tasks, model, method = setup()
    labelled = torch.tensor([[1, 0, 0], [1, 0, 1], [0, 0, 1]])                # depth: labelled nowhere
    step = train_step(tasks, model, method, labelled)
    calls = count_denoiser_calls(method, monkeypatch)
    terms = method.losses(step)
    # the denoiser runs on the labelled rows of each task only (S = 2 calls each), never on depth
    assert [(t, n) for t, n, _ in calls] == [("semantic", 2), ("semantic", 2), ("normal", 2), ("normal", 2)]
    sum(terms.supervised.values()).backward()
    depth_params = [p for name, p in method.named_parameters() if ".depth." in f".{name}." or name.endswith("depth")]
    assert depth_params and all(p.grad is None or not p.grad.any() for p in depth_params)
    assert method.denoiser.embed["semantic"].weight.grad.abs().sum() > 0
    # the ground truth of unlabelled pairs is never read: garbage there changes nothing
    spoiled = {k: v.clone() for k, v in step.targets.items()}
    spoiled["depth"][:] = float("nan")
    spoiled["semantic"][2] = 7
    spoiled["normal"][0] = float("nan")
    torch.manual_seed(3)
    a = method.losses(step)
    torch.manual_seed(3)
    b = method.losses(Step(step.images, step.features, step.refined, step.predictions, spoiled, labelled))
    for k in a.supervised:
        torch.testing.assert_close(a.supervised[k], b.supervised[k])


def test_the_condition_reads_the_detached_predictions_of_all_tasks():
    tasks, model, method = setup(MIXED, {"preliminary_weight": 0.0})
    assert method.condition.conv.in_channels == sum(t.channels for t in tasks)   # every task, image-level too
    labelled = torch.tensor([[1, 1, 1, 1, 1], [1, 0, 1, 0, 1]])
    step = train_step(tasks, model, method, labelled)
    sum(method.losses(step).supervised.values()).backward()
    # with the preliminary loss off, the preliminary heads reach the loss only through the condition: detached
    assert all(p.grad is None or not p.grad.any() for p in method.preliminary_head.parameters())
    assert method.condition.conv.weight.grad.abs().sum() > 0
    # every task's preliminary prediction moves the condition
    with torch.no_grad():
        base = method.refine(step.features, step.images).extras["condition"]
        for t in tasks:
            head = method.preliminary_head[t.name]
            bias = head.mlp[-1].bias if t.image_level else head.bias
            bias += 1.0
            moved = method.refine(step.features, step.images).extras["condition"]
            bias -= 1.0
            assert not torch.allclose(moved, base), t.name


@pytest.mark.parametrize("S", [1, 2, 3])
def test_the_number_of_denoising_steps_follows_the_schedule(S, monkeypatch):
    tasks, model, method = setup(options={"num_timesteps": S})
    model.eval()
    method.eval()
    calls = count_denoiser_calls(method, monkeypatch)
    with torch.no_grad():
        forward_step(model, method, torch.rand(2, 3, SIZE, SIZE))
    assert [(t, s) for t, _, s in calls] == [(t.name, [s]) for t in tasks for s in reversed(range(S))]
    calls.clear()
    step = train_step(tasks, model, method, torch.tensor([[1, 0, 0], [0, 0, 1]]))
    method.losses(step)
    assert [(t, n, s) for t, n, s in calls] == [(t, 1, [s]) for t in ("semantic", "normal")
                                                 for s in reversed(range(S))]


def test_schedule_posterior_keeps_the_forward_marginals():
    """q(x_{s−1} | x_s, x_0) with x_s ~ q(x_s | x_0) has mean √ᾱ_{s−1} x_0 and variance 1 − ᾱ_{s−1} (DDPM)."""
    sched = DiffusionSchedule(4, 1e-3, 1e-2).double()
    torch.testing.assert_close(sched.betas[[0, -1]], torch.tensor([1e-3, 1e-2], dtype=torch.float64))
    bar = torch.cumprod(1 - sched.betas, 0)
    torch.testing.assert_close(sched.sqrt_bar ** 2, bar, rtol=1e-6, atol=0)
    for s in range(1, 4):
        c1, c2 = sched.posterior_x0[s], sched.posterior_xs[s]
        var = sched.posterior_log_variance[s].exp()
        torch.testing.assert_close(c1 + c2 * sched.sqrt_bar[s], sched.sqrt_bar[s - 1], rtol=1e-6, atol=0)
        torch.testing.assert_close(c2 ** 2 * (1 - bar[s]) + var, 1 - bar[s - 1], rtol=1e-5, atol=0)
    assert DiffusionSchedule(2, 1e-3, 1e-2).betas.tolist() == pytest.approx([1e-3, 1e-2])   # the released S = 2


@pytest.mark.parametrize("target", ["feature", "prediction"])
def test_loss_is_the_released_per_sample_loss(target):
    """L_t = Σ_b (T / k_b) m_bt [ℓ_t(Ŷ_bt) + 0.5 ℓ_t(up(P_bt))] / B, each sample denoised alone (the code's loop)."""
    dt = torch.float64
    tasks, model, method = setup(options={"diffusion_target": target}, dtype=dt)
    labelled = torch.tensor([[1, 0, 0], [1, 1, 1], [0, 1, 1], [1, 0, 1]])
    step = train_step(tasks, model, method, labelled, dtype=dt)
    B, T, S = 4, 3, 2
    g = torch.Generator().manual_seed(1)
    x0 = {t.name: method._x_start(t, step.refined) for t in tasks}
    per_sample = {t.name: [[torch.randn(x0[t.name][b:b + 1].shape, generator=g, dtype=dt) for _ in range(S)]
                           for b in range(B)] for t in tasks}
    batched = {t.name: [torch.cat([per_sample[t.name][b][s] for b in range(B) if labelled[b, i]])
                        for s in range(S)] for i, t in enumerate(tasks)}
    terms = method.losses(step, batched).supervised
    cond = step.refined.extras["condition"]
    prelim = method.preliminary_predictions(step.refined, (SIZE, SIZE))
    for i, t in enumerate(tasks):
        expected = 0.0
        for b in range(B):
            if not labelled[b, i]:
                continue
            h = method.denoise(t, x0[t.name][b:b + 1], cond[b:b + 1], per_sample[t.name][b])
            final = method._prediction(t, method.readout_head[t.name](h), (SIZE, SIZE))
            one = torch.ones(1)
            loss = task_loss(t, final, step.targets[t.name][b:b + 1], one, method.loss_options)
            loss = loss + 0.5 * task_loss(t, prelim[t.name][b:b + 1], step.targets[t.name][b:b + 1], one,
                                          method.loss_options)
            expected = expected + T / int(labelled[b].sum()) * loss / B
        torch.testing.assert_close(terms[t.name], expected)
    plain = build_method("diffusionmtl", tasks, model.feature_channels, {"label_balance": False,
                                                                          "diffusion_target": target}).to(dt)
    plain.load_state_dict(method.state_dict())
    plain.train()
    unbalanced = plain.losses(step, batched).supervised
    assert not torch.allclose(unbalanced["semantic"], terms["semantic"])


@pytest.mark.parametrize("target", ["feature", "prediction"])
def test_image_level_tasks_and_both_targets_train_and_predict(target):
    tasks, model, method = setup(MIXED, {"diffusion_target": target})
    if target == "prediction":
        assert method.denoiser.embed["num_objects"].in_channels == 1                 # the diffused map is P_t
    labelled = torch.tensor([[1, 0, 0, 1, 0], [0, 1, 1, 0, 1], [1, 0, 0, 0, 1]])
    step = train_step(tasks, model, method, labelled)
    terms = method.losses(step)
    assert all(math.isfinite(float(v.detach())) for v in terms.values())
    sum(terms.supervised.values()).backward()
    assert method.readout_head["dominant_class"].mlp[0].weight.grad.abs().sum() > 0
    model.eval()
    method.eval()
    with torch.no_grad():
        torch.manual_seed(0)
        _, _, a, _ = forward_step(model, method, step.images)
        torch.manual_seed(0)
        _, _, b, _ = forward_step(model, method, step.images)
    assert a["dominant_class"].shape == (3, 4) and a["semantic"].shape == (3, 5, SIZE, SIZE)
    for k in a:                                                     # noise from the seeded global generator
        torch.testing.assert_close(a[k], b[k])


def test_options_are_checked_before_any_work():
    with pytest.raises(ValueError, match=r"diffusionmtl\.diffusion_target='noise'.*allowed"):
        DiffusionMTLOptions(diffusion_target="noise")
    with pytest.raises(ValueError, match=r"diffusionmtl\.arch='reference'.*width=32"):
        DiffusionMTLOptions(arch="reference", width=32)
    with pytest.raises(ValueError, match=r"num_timesteps=0"):
        DiffusionMTLOptions(num_timesteps=0)
    with pytest.raises(ValueError, match="heads=3: must divide width=64"):
        DiffusionMTLOptions(heads=3)
    with pytest.raises(ValueError, match="diffusion_target"):
        ExperimentConfig(method="diffusionmtl", method_options={"diffusion_target": "x"})


# --- paper configurations -------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["diffusionmtl_pascal", "diffusionmtl_nyud", "diffusionmtl_nyuv2"])
def test_paper_configurations_validate(name):
    from pathlib import Path

    from mtlwb.sweeps.spec import load_spec

    path = Path(__file__).resolve().parents[1] / "sweeps" / "benchmarks" / f"{name}.yaml"
    spec = load_spec(path)
    fixed = spec.fixed
    assert (fixed["backbone"], fixed["lr"], fixed["weight_decay"], fixed["lr_schedule"], fixed["grad_clip"]) == (
        "resnet18_multiscale", 2e-5, 1e-6, "poly", 10.0)                 # DiffusionMTL's released optimiser
    assert fixed["normal_loss"] == "l1" and fixed["task_weights"]["normal"] == 30.0    # its L1 sums 3 channels
    runs = spec.runs()
    options = [r.params["method_options"] for r in runs if r.params["method"] == "diffusionmtl"]
    assert options and all(o["arch"] == "reference" for o in options)
    assert {r.params["label_setting"] for r in runs} == {"onelabel", "randomlabel"}
    for run in runs:
        ExperimentConfig(**run.effective)
    text = path.read_text()
    assert "table" in text and "Reproduces" in text and "iffer" in text      # names its table and what differs
    if name == "diffusionmtl_pascal":
        assert (fixed["epochs"], fixed["batch_size"], fixed["edge_loss"]) == (100, 6, "mtl_pytorch")
        assert fixed["task_weights"] == {"semantic": 1.0, "parts": 2.0, "saliency": 5.0, "edge": 50.0,
                                         "normal": 30.0}
        assert {o.get("diffusion_target") for o in options} == {"feature", "prediction"}
    else:
        assert (fixed["epochs"], fixed["batch_size"], fixed["augment"]) == (200, 4, False)


# --- gradient clipping (the released config clips the gradient norm at 10) -------------------------------------------

def test_grad_clip_bounds_every_step(tiny_config, tmp_path):
    with pytest.raises(ValueError, match=r"grad_clip=-1.*>= 0"):
        ExperimentConfig(grad_clip=-1)

    def moved(clip: float) -> float:
        cfg = tiny_config(grad_clip=clip, lr=1e-3, train_samples=16, run_dir=str(tmp_path / f"c{clip}"))
        exp = mtlwb.build_experiment(cfg)
        before = [p.detach().clone() for p in exp.model.parameters()]
        mtlwb.train(cfg, exp)
        return max(float((p.detach() - b).abs().max()) for p, b in zip(exp.model.parameters(), before))

    # Adam's step is lr·g/(|g| + 1e-8): with every gradient clipped far below 1e-8 the parameters hardly move
    assert moved(0.0) > 5e-4 and moved(1e-12) < 1e-5


# --- through the papermill notebook -----------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("setting", ["onelabel", "randomlabel", "full"])
def test_trains_through_the_notebook(tiny_root, tmp_path, setting):
    import json
    from pathlib import Path

    import papermill as pm

    ROOT = Path(__file__).resolve().parents[1]
    run_dir = tmp_path / "run"
    pm.execute_notebook(str(ROOT / "notebooks" / "train.ipynb"), str(tmp_path / "out.ipynb"),
                        parameters={"method": "diffusionmtl", "label_setting": setting, "data_root": str(tiny_root),
                                    "train_samples": 16, "eval_samples": 8, "batch_size": 8, "grad_clip": 10.0,
                                    "device": "cpu", "run_dir": str(run_dir), "progress": False},
                        cwd=str(tmp_path), progress_bar=False, kernel_name="python3")
    record = json.loads((run_dir / "metrics.json").read_text())
    assert record["status"] == "completed" and record["config"]["grad_clip"] == 10.0
    assert set(record["final"]) == set(DENSE)
