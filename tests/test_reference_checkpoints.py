"""Reference checkpoints (names and shapes of the public modules) load into the workbench's layouts.

The reference key tables are derived here, without the reference code, by this rule (read from the public
modules; the derivation was cross-checked outside the project against their ``state_dict()``, NYUv2 and
Cityscapes): a SegNet with widths f = 64-128-256-512-512 names the first conv of encoder stage i
``encoder_block.i`` (f[i-1] → f[i], the input width for i = 0) and the others ``conv_block_enc.i`` (one layer for
i < 2, ``conv_block_enc.i.{0,1}`` after), and the decoder stage that undoes encoder stage i ``decoder_block.i``
(f[i] → f[i-1]; 64 → 64 for i = 0) and ``conv_block_dec.i`` (width f[i-1]; 64 for i = 0). A conv-BN-ReLU layer
holds ``0.{weight,bias}`` and ``1.{weight,bias,running_mean,running_var,num_batches_tracked}``; ``Mapfns``' FiLM
layer holds ``gamma``, ``beta`` [C, T(T−1)], ``conv.*`` and ``bn.*`` under the prefix ``mapfns.``.

The loaded modules are compared with modules whose weights the test sets by walking both layer lists in forward
order — a second, independent statement of the same correspondence.
"""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from mtlwb.cli import main
from mtlwb.config import ExperimentConfig
from mtlwb.experiment.loop import build_experiment, evaluate
from mtlwb.experiment.reference_checkpoints import load_reference_checkpoint, load_reference_state, reference_state_dict
from mtlwb.methods.base import build_method
from mtlwb.models.mtl_net import MultiTaskNet
from mtlwb.tasks import make_tasks

F = (64, 128, 256, 512, 512)
BN = {"weight": "c", "bias": "c", "running_mean": "c", "running_var": "c", "num_batches_tracked": ""}


def segnet_encoder_layers(in_channels: int) -> list[tuple[str, int, int]]:
    """(name, cin, cout) of the encoder's conv layers in forward order."""
    out = []
    for i in range(5):
        out.append((f"encoder_block.{i}", in_channels if i == 0 else F[i - 1], F[i]))
        subs = [f"conv_block_enc.{i}"] if i < 2 else [f"conv_block_enc.{i}.0", f"conv_block_enc.{i}.1"]
        out += [(s, F[i], F[i]) for s in subs]
    return out


def segnet_decoder_layers() -> list[tuple[str, int, int]]:
    out = []
    for i in reversed(range(5)):
        width = F[i - 1] if i > 0 else F[0]
        out.append((f"decoder_block.{i}", F[i], width))
        subs = [f"conv_block_dec.{i}"] if i < 2 else [f"conv_block_dec.{i}.0", f"conv_block_dec.{i}.1"]
        out += [(s, width, width) for s in subs]
    return out


def conv_bn_entries(name: str, cin: int, cout: int, conv: str = "0", bn: str = "1") -> dict[str, tuple]:
    table = {f"{name}.{conv}.weight": (cout, cin, 3, 3), f"{name}.{conv}.bias": (cout,)}
    table.update({f"{name}.{bn}.{k}": (cout,) if v else () for k, v in BN.items()})
    return table


def reference_table(kind: str, channels: list[int]) -> dict[str, tuple]:
    """Reference state-dict keys → shapes for NYUv2-like (13, 1, 3) or Cityscapes-like (7, 1) channels."""
    table: dict[str, tuple] = {}
    if kind == "segnet_mtl":
        for name, cin, cout in segnet_encoder_layers(3) + segnet_decoder_layers():
            table.update(conv_bn_entries(name, cin, cout))
        # the Cityscapes SegNet_MTL still builds the normals head (its forward skips it)
        for k, c in enumerate([*channels, 3] if len(channels) == 2 else channels, 1):
            table.update({f"pred_task{k}.0.weight": (64, 64, 3, 3), f"pred_task{k}.0.bias": (64,),
                          f"pred_task{k}.1.weight": (c, 64, 1, 1), f"pred_task{k}.1.bias": (c,)})
    elif kind == "segnet_jtr":
        total = sum(channels)
        for name, cin, cout in segnet_encoder_layers(total) + segnet_decoder_layers():
            table.update(conv_bn_entries(name, cin, cout))
        table.update({"pred_layer.0.weight": (64, 64, 3, 3), "pred_layer.0.bias": (64,),
                      "pred_layer.1.weight": (total, 64, 1, 1), "pred_layer.1.bias": (total,)})
        table.update({f"batchnorm.{k}": (total,) if v else () for k, v in BN.items()})
    elif kind == "mapfns":
        pairs = len(channels) * (len(channels) - 1)
        for t, c in enumerate(channels):
            table.update(conv_bn_entries(f"mapfns.pred_encoder_source.{t}", c, 64))
        for name, cin, cout in segnet_encoder_layers(64):
            table.update(conv_bn_entries(f"mapfns.{name}", cin, cout, conv="conv", bn="bn"))
            table.update({f"mapfns.{name}.gamma": (cout, pairs), f"mapfns.{name}.beta": (cout, pairs)})
    return table


def random_state(table: dict[str, tuple], seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    state = {}
    for k, shape in table.items():
        if k.endswith("num_batches_tracked"):
            state[k] = torch.tensor(7)
        elif k.endswith("running_var"):
            state[k] = torch.rand(shape, generator=g) + 0.5
        else:
            state[k] = torch.randn(shape, generator=g) * (0.05 if len(shape) > 1 else 0.5)
    return state


# --- the same correspondence, stated by walking layers in forward order --------------------------------------

def set_conv_bn(layer: nn.Sequential, state: dict, name: str, conv: str = "0", bn: str = "1") -> None:
    c, n = layer[0], layer[1]
    with torch.no_grad():
        c.weight.copy_(state[f"{name}.{conv}.weight"])
        c.bias.copy_(state[f"{name}.{conv}.bias"])
        n.weight.copy_(state[f"{name}.{bn}.weight"])
        n.bias.copy_(state[f"{name}.{bn}.bias"])
        if isinstance(n, nn.BatchNorm2d):
            n.running_mean.copy_(state[f"{name}.{bn}.running_mean"])
            n.running_var.copy_(state[f"{name}.{bn}.running_var"])


def layers_in_order(stages: nn.ModuleList) -> list:
    return [layer for stage in stages for layer in stage]


def set_segnet_mtl(model: MultiTaskNet, state: dict) -> None:
    names = segnet_encoder_layers(3) + segnet_decoder_layers()
    layers = layers_in_order(model.encoder.encoder) + layers_in_order(model.encoder.decoder)
    assert len(names) == len(layers)
    for (name, _, _), layer in zip(names, layers):
        set_conv_bn(layer, state, name)
    with torch.no_grad():
        for k, task in enumerate(["semantic", "depth", "normal"], 1):
            if task in model.heads:
                head = model.heads[task]
                head.conv.weight.copy_(state[f"pred_task{k}.0.weight"])
                head.conv.bias.copy_(state[f"pred_task{k}.0.bias"])
                head.out.weight.copy_(state[f"pred_task{k}.1.weight"])
                head.out.bias.copy_(state[f"pred_task{k}.1.bias"])


def set_segnet_jtr(method, state: dict) -> None:
    total = method.in_channels
    names = segnet_encoder_layers(total) + segnet_decoder_layers()
    layers = layers_in_order(method.encoder.stages) + layers_in_order(method.decoder.stages)
    for (name, _, _), layer in zip(names, layers):
        set_conv_bn(layer, state, name)
    with torch.no_grad():
        for i in (0, 1):
            method.decoder.head[i].weight.copy_(state[f"pred_layer.{i}.weight"])
            method.decoder.head[i].bias.copy_(state[f"pred_layer.{i}.bias"])


def set_mapfns(method, state: dict) -> None:
    for t, stem in enumerate(method.stems):
        set_conv_bn(stem, state, f"mapfns.pred_encoder_source.{t}")
    for (name, _, _), layer in zip(segnet_encoder_layers(64), layers_in_order(method.mapping.stages)):
        with torch.no_grad():
            for ours, ref in (("conv", "conv"), ("norm", "bn")):
                getattr(layer, ours).weight.copy_(state[f"mapfns.{name}.{ref}.weight"])
                getattr(layer, ours).bias.copy_(state[f"mapfns.{name}.{ref}.bias"])
            layer.gamma.copy_(state[f"mapfns.{name}.gamma"])
            layer.beta.copy_(state[f"mapfns.{name}.beta"])


NYU = (["semantic", "depth", "normal"], [13, 1, 3], 13)
CITY = (["semantic", "depth"], [7, 1], 7)


@pytest.mark.parametrize("names,channels,classes", [NYU, CITY])
def test_segnet_mtl_loads_and_predicts_like_directly_set_weights(names, channels, classes):
    tasks = make_tasks(names, classes)
    state = random_state(reference_table("segnet_mtl", channels))
    loaded, direct = MultiTaskNet(tasks, "segnet").eval(), MultiTaskNet(tasks, "segnet").eval()
    report = load_reference_state("segnet_mtl", state, loaded)
    set_segnet_mtl(direct, state)
    assert len(report.loaded) == len(state) - 4 * (3 - len(names))
    assert report.dropped == [f"pred_task3.{i}.{p}" for i in (0, 1) for p in ("weight", "bias")][:4 * (3 - len(names))]
    x = torch.randn(1, 3, 32, 64)
    with torch.no_grad():
        got, want, fresh = loaded(x)[0], direct(x)[0], MultiTaskNet(tasks, "segnet").eval()(x)[0]
    for n in names:
        torch.testing.assert_close(got[n], want[n])
        assert not torch.allclose(got[n], fresh[n])


def test_mtpsl_segnet_logsigma_is_dropped():
    state = random_state(reference_table("segnet_mtl", [13, 1, 3]))
    state["logsigma"] = torch.tensor([-0.5, -0.5, -0.5])
    report = load_reference_state("segnet_mtl", state, MultiTaskNet(make_tasks(*NYU[::2]), "segnet"))
    assert report.dropped == ["logsigma"]


@pytest.mark.parametrize("names,channels,classes", [NYU, CITY])
def test_segnet_jtr_loads_into_the_reference_joint_network(names, channels, classes):
    tasks = make_tasks(names, classes)
    state = random_state(reference_table("segnet_jtr", channels))
    loaded = build_method("jtr", tasks, 64, {"arch": "reference"})
    direct = build_method("jtr", tasks, 64, {"arch": "reference"})
    report = load_reference_state("segnet_jtr", state, loaded)
    set_segnet_jtr(direct, state)
    # per-sample norms keep no running statistics: the ref.'s are dropped, everything else is loaded
    assert all(k.rsplit(".", 1)[-1] in ("running_mean", "running_var", "num_batches_tracked")
               for k in report.dropped) and len(report.loaded) + len(report.dropped) == len(state)
    x = torch.rand(2, sum(channels), 32, 32)
    with torch.no_grad():
        got = loaded.decoder(loaded.encoder(x), (32, 32))
        want = direct.decoder(direct.encoder(x), (32, 32))
    torch.testing.assert_close(got, want)


@pytest.mark.parametrize("names,channels,classes", [NYU, CITY])
def test_mapfns_loads_into_the_reference_mapping_network(names, channels, classes):
    tasks = make_tasks(names, classes)
    state = random_state(reference_table("mapfns", channels))
    loaded = build_method("mtpsl", tasks, 64, {"arch": "reference"})
    direct = build_method("mtpsl", tasks, 64, {"arch": "reference"})
    load_reference_state("mapfns", state, loaded)
    set_mapfns(direct, state)
    T = len(tasks)
    pair = torch.arange(T * (T - 1))
    x = torch.rand(pair.numel(), 64, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded.mapping(x, pair), direct.mapping(x, pair))
        for a, b in zip(loaded.stems, direct.stems):
            inp = torch.rand(2, a[0].in_channels, 32, 32)
            torch.testing.assert_close(a(inp), b(inp))


def _kind_module(kind: str):
    tasks = make_tasks(*NYU[::2])
    if kind == "segnet_mtl":
        return MultiTaskNet(tasks, "segnet")
    return build_method("mtpsl" if kind == "mapfns" else "jtr", tasks, 64, {"arch": "reference"})


@pytest.mark.parametrize("fault", ["missing", "extra", "misshaped"])
@pytest.mark.parametrize("kind", ["segnet_mtl", "mapfns", "segnet_jtr"])
def test_missing_extra_and_misshaped_keys_are_named(kind, fault):
    state = random_state(reference_table(kind, [13, 1, 3]))
    module = _kind_module(kind)
    before = {k: v.clone() for k, v in module.state_dict().items()}
    first_conv = next(k for k in state if k.endswith("encoder_block.1.0.weight") or
                      k.endswith("encoder_block.1.conv.weight"))
    extra_key = ("mapfns." if kind == "mapfns" else "") + "decoder_block.9.0.weight"
    bad, pattern = {
        "missing": ({k: v for k, v in state.items() if k != first_conv}, r"missing \(1\)"),
        "extra": (dict(state, **{extra_key: torch.zeros(1)}), r"unexpected \(1\).*decoder_block\.9\.0\.weight"),
        "misshaped": (dict(state, **{first_conv: torch.zeros(5, 5, 3, 3)}),
                      r"mis-shaped \(1\).*" + first_conv.replace(".", r"\.") + r".*\(5, 5, 3, 3\)"),
    }[fault]
    with pytest.raises(ValueError, match=pattern):
        load_reference_state(kind, bad, module)
    assert all(torch.equal(before[k], v) for k, v in module.state_dict().items())   # nothing copied on error


def test_wrong_module_and_task_order_are_refused():
    state = random_state(reference_table("mapfns", [13, 1, 3]))
    with pytest.raises(ValueError, match="arch='reference'.*arch='compact'"):
        load_reference_state("mapfns", state, build_method("mtpsl", make_tasks(*NYU[::2]), 64))
    with pytest.raises(ValueError, match="order"):
        load_reference_state("mapfns", state, build_method("mtpsl", make_tasks(["depth", "semantic", "normal"], 13),
                                                           64, {"arch": "reference"}))
    with pytest.raises(ValueError, match="backbone='segnet'"):
        load_reference_state("segnet_mtl", state, MultiTaskNet(make_tasks(*NYU[::2])))
    with pytest.raises(ValueError, match="kind='bogus'"):
        load_reference_state("bogus", state, MultiTaskNet(make_tasks(*NYU[::2])))


def test_checkpoint_containers(tmp_path):
    sd = random_state(reference_table("segnet_mtl", [13, 1, 3]))
    mapfns = random_state(reference_table("mapfns", [13, 1, 3]))
    jtr_file = tmp_path / "jtr.pth.tar"       # JTR's train_nyuv2.py layout
    torch.save({"epoch": 3, "model_state_dict": sd, "optimizer": {"state": {}, "param_groups": []}}, jtr_file)
    mtpsl_file = tmp_path / "mtpsl.pth.tar"   # MTPSL's nyu_mtl_xtc.py layout, DataParallel prefix on the model
    torch.save({"epoch": 3, "state_dict": {"module." + k: v for k, v in sd.items()}, "mapfns": mapfns}, mtpsl_file)
    for path in (jtr_file, mtpsl_file):
        model = MultiTaskNet(make_tasks(*NYU[::2]), "segnet")
        load_reference_checkpoint(path, "segnet_mtl", model)
        torch.testing.assert_close(model.heads["depth"].out.weight, sd["pred_task2.1.weight"])
    method = build_method("mtpsl", make_tasks(*NYU[::2]), 64, {"arch": "reference"})
    load_reference_checkpoint(mtpsl_file, "mapfns", method)
    torch.testing.assert_close(method.mapping.stages[4][2].gamma, mapfns["mapfns.conv_block_enc.4.1.gamma"])
    with pytest.raises(ValueError, match=r"no kind='mapfns' state dict.*\['mapfns'\]"):
        reference_state_dict({"epoch": 3, "model_state_dict": sd}, "mapfns")
    with pytest.raises(ValueError, match="holds a list"):
        reference_state_dict([sd], "segnet_mtl")
    with pytest.raises(FileNotFoundError, match="checkpoint="):
        load_reference_checkpoint(tmp_path / "none.pth", "segnet_mtl", MultiTaskNet(make_tasks(*NYU[::2]), "segnet"))


def test_cli_eval_reference_matches_evaluate_with_directly_set_weights(tmp_path, capsys):
    # the built-in scenes (7 classes) stand in for NYUv2: same tasks, same SegNet_MTL names
    state = random_state(reference_table("segnet_mtl", [7, 1, 3]))
    ckpt = tmp_path / "segnet_mtl.pth.tar"
    torch.save({"epoch": 1, "model_state_dict": state}, ckpt)
    out = tmp_path / "metrics.json"
    rc = main(["eval-reference", "--checkpoint", str(ckpt), "--dataset", "scenes", "--data-root",
               "data/scenes-64x80", "--eval-samples", "4", "--device", "cpu", "--out", str(out)])
    assert rc == 0
    got = json.loads(out.read_text())
    config = ExperimentConfig(dataset="scenes", backbone="segnet", label_setting="full", train_samples=1,
                              eval_samples=4, batch_size=2, device="cpu", progress=False)
    exp = build_experiment(config)
    set_segnet_mtl(exp.model, state)
    want, _ = evaluate(exp)
    assert got == json.loads(json.dumps(want))
    assert "semantic" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["eval-reference", "--checkpoint", str(ckpt), "--kind", "mapfns", "--dataset", "scenes"])
