"""Load checkpoints of the public reference code into the workbench's modules.

Three kinds of state dict, named as in the reference modules:

    kind          reference module                                         loads into
    segnet_mtl    JTR ``SegNet_MTL`` (``code/models/{nyuv2,cityscapes}_     ``MultiTaskNet(backbone="segnet")``
                  segnet_mtl.py``); MTPSL's ``SegNet`` (``model/segnet_
                  mtl.py``) has the same names plus ``logsigma``
    mapfns        MTPSL ``Mapfns`` (``model/mapfns.py``)                   ``MTPSL`` built with ``arch="reference"``
    segnet_jtr    JTR ``SegNet_JTR`` (``code/models/*_segnet_jtr.py``)     ``JTR`` built with ``arch="reference"``

The key maps are rules over the reference names (``reference_key``), not tables: the reference SegNets name the
first conv of encoder stage i ``encoder_block.i`` and the others ``conv_block_enc.i`` (a single layer for
i < 2, a two-layer Sequential after), and mirror that in the decoder, where ``decoder_block.j`` /
``conv_block_dec.j`` belong to the decoder stage that runs (4 − j)-th. Every key and shape is checked before
anything is copied; a missing, unexpected or mis-shaped key is a ``ValueError`` that names it.

Dropped on purpose (reported in ``LoadReport.dropped``): BatchNorm running statistics where the workbench's layout
normalizes per sample (the reference joint and mapping networks; see ``methods/jtr_segnet.py`` and
``methods/mtpsl_mapfns.py``), MTPSL's ``logsigma`` (uncertainty-weighting parameters, not part of the network),
and heads of tasks the model does not predict (JTR's Cityscapes ``SegNet_MTL`` builds a normals head,
``pred_task3``, that its forward never uses).

How the reference scripts save: JTR's ``train_nyuv2.py`` writes ``{"epoch", "model_state_dict", "optimizer",
"scheduler"}`` (the joint network is not saved); MTPSL's ``nyu_mtl_xtc.py`` writes ``{"epoch", "state_dict",
"mapfns", "optimizer", "optimizer_film", ...}``. ``reference_state_dict`` picks the state dict for a kind from such
a dict, or takes a bare state dict; a ``module.`` prefix (DataParallel) is removed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

KINDS = ("segnet_mtl", "mapfns", "segnet_jtr")
REFERENCE_TASKS = ("semantic", "depth", "normal")        # pred_task1..3, stems 0..2, channel order of the refs
CONTAINER_KEYS = {"segnet_mtl": ("model_state_dict", "state_dict"), "mapfns": ("mapfns",),
                  "segnet_jtr": ("state_dict",)}
BN_BUFFERS = ("running_mean", "running_var", "num_batches_tracked")
DROPPED_KEYS = {"segnet_mtl": ("logsigma",), "mapfns": (), "segnet_jtr": ()}
NUM_STAGES = 5

_SEGNET = re.compile(r"^(encoder_block|conv_block_enc|decoder_block|conv_block_dec)\.(\d+)\.(.+)$")
_HEAD = re.compile(r"^pred_task([1-9])\.([01])\.(.+)$")
_STEM = re.compile(r"^pred_encoder_source\.(\d+)\.(.+)$")


@dataclass
class LoadReport:
    loaded: list[str] = field(default_factory=list)       # workbench keys written
    dropped: list[str] = field(default_factory=list)      # reference keys deliberately not loaded


def segnet_position(key: str) -> tuple[str, int, int, str] | None:
    """A reference SegNet key → (part "encoder"/"decoder", workbench stage, conv index in the stage, rest).

    Workbench stages run in forward order: encoder 0..4, decoder 0..4 (decoder stage k is the ref.'s index 4 − k).
    """
    m = _SEGNET.match(key)
    if m is None:
        return None
    block, i, rest = m.group(1), int(m.group(2)), m.group(3)
    if i >= NUM_STAGES:
        return None
    part = "encoder" if block.endswith("enc") or block == "encoder_block" else "decoder"
    stage = i if part == "encoder" else NUM_STAGES - 1 - i
    if block in ("encoder_block", "decoder_block"):
        return part, stage, 0, rest
    if i < 2:                                   # conv_block_*.0 / .1: one layer
        return part, stage, 1, rest
    k, _, rest = rest.partition(".")            # conv_block_*.i, i >= 2: Sequential of two layers
    if k not in ("0", "1") or not rest:
        return None
    return part, stage, 1 + int(k), rest


def reference_key(kind: str, key: str, task_names: list[str]) -> str | None:
    """The workbench key of a reference key (None: the key has no place in the workbench layout)."""
    if kind == "segnet_mtl":
        pos = segnet_position(key)
        if pos is not None:
            part, stage, conv, rest = pos
            return f"encoder.{part}.{stage}.{conv}.{rest}"
        m = _HEAD.match(key)
        if m is not None and int(m.group(1)) <= len(REFERENCE_TASKS):
            layer = "conv" if m.group(2) == "0" else "out"
            return f"heads.{REFERENCE_TASKS[int(m.group(1)) - 1]}.{layer}.{m.group(3)}"
        return None
    if kind == "segnet_jtr":
        pos = segnet_position(key)
        if pos is not None:
            part, stage, conv, rest = pos
            return f"{part}.stages.{stage}.{conv}.{rest}"
        if key.startswith("pred_layer."):
            return "decoder.head." + key[len("pred_layer."):]
        if key.startswith("batchnorm."):
            return "decoder." + key
        return None
    if kind == "mapfns":
        m = _STEM.match(key)
        if m is not None:
            return f"stems.{m.group(1)}.{m.group(2)}"
        pos = segnet_position(key)
        if pos is None or pos[0] != "encoder":
            return None
        _, stage, conv, rest = pos
        rest = "norm." + rest[len("bn."):] if rest.startswith("bn.") else rest
        return f"mapping.stages.{stage}.{conv}.{rest}"
    raise ValueError(f"kind={kind!r}: allowed {list(KINDS)}")


def _target(kind: str, module: nn.Module) -> tuple[dict[str, torch.Tensor], list[str]]:
    """The module's state entries a reference checkpoint of ``kind`` fills, and the task names in its order."""
    from ..methods.jtr import JTR
    from ..methods.mtpsl import MTPSL
    from ..models.mtl_net import MultiTaskNet
    from ..models.segnet import SegNet

    state = module.state_dict()
    if kind == "segnet_mtl":
        if not isinstance(module, MultiTaskNet) or not isinstance(module.encoder, SegNet):
            raise ValueError("kind='segnet_mtl' loads into a MultiTaskNet with backbone='segnet', "
                             f"got {type(module).__name__}")
        return state, [t.name for t in module.tasks]
    expected = {"mapfns": (MTPSL, ("stems.", "mapping.")), "segnet_jtr": (JTR, ("encoder.", "decoder."))}
    if kind not in expected:
        raise ValueError(f"kind={kind!r}: allowed {list(KINDS)}")
    cls, prefixes = expected[kind]
    if not isinstance(module, cls) or module.options.arch != "reference":
        raise ValueError(f"kind={kind!r} loads into a {cls.__name__} method built with arch='reference', "
                         f"got {type(module).__name__}"
                         + (f" with arch={module.options.arch!r}" if isinstance(module, cls) else ""))
    names = [t.name for t in module.tasks]
    if names != list(REFERENCE_TASKS[:len(names)]):
        raise ValueError(f"kind={kind!r}: the reference network's inputs are in the order "
                         f"{list(REFERENCE_TASKS[:len(names)])}; the method's tasks are {names} "
                         "(build it with the tasks in that order)")
    return {k: v for k, v in state.items() if k.startswith(prefixes)}, names


def _strip_prefix(state: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    if state and all(k.startswith(prefix) for k in state):
        return {k[len(prefix):]: v for k, v in state.items()}
    return dict(state)


def load_reference_state(kind: str, state_dict: Mapping[str, torch.Tensor], module: nn.Module) -> LoadReport:
    """Rename a reference state dict of ``kind`` to ``module``'s names, check every key and shape, then copy.

    Raises ValueError naming every missing, unexpected or mis-shaped key (nothing is copied then).
    """
    if kind not in KINDS:
        raise ValueError(f"kind={kind!r}: allowed {list(KINDS)}")
    target, names = _target(kind, module)
    state = _strip_prefix(state_dict, "module.")
    report, mapped, unexpected, misshaped, seen = LoadReport(), {}, [], [], set()
    for key, value in state.items():
        if not torch.is_tensor(value):
            unexpected.append(f"{key} (not a tensor: {type(value).__name__})")
            continue
        # Mapfns nests its network as .mapfns (a bare SegNet_enc state dict has no prefix)
        ours = reference_key(kind, key[len("mapfns."):] if kind == "mapfns" and key.startswith("mapfns.") else key,
                             names)
        if ours is None and key in DROPPED_KEYS[kind]:
            report.dropped.append(key)
            continue
        if ours is not None and ours not in target and key.rsplit(".", 1)[-1] in BN_BUFFERS \
                and ours.rsplit(".", 1)[0] + ".weight" in target:
            report.dropped.append(key)               # BatchNorm statistics; our layout normalizes per sample
            continue
        if kind == "segnet_mtl" and ours is not None and ours.startswith("heads.") \
                and ours.split(".")[1] not in names:
            report.dropped.append(key)               # a head of a task the model does not predict
            continue
        if ours is None or ours not in target:
            unexpected.append(key if ours is None else f"{key} (→ {ours}: the module has no such entry)")
            continue
        seen.add(ours)
        if tuple(value.shape) != tuple(target[ours].shape):
            misshaped.append(f"{key} → {ours}: {tuple(value.shape)} != {tuple(target[ours].shape)}")
            continue
        mapped[ours] = value
    missing = sorted(set(target) - seen)
    if missing or unexpected or misshaped:
        parts = [f"{label} ({len(items)}): {items[:8]}{' ...' if len(items) > 8 else ''}"
                 for label, items in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", misshaped))
                 if items]
        raise ValueError(f"reference checkpoint of kind={kind!r} does not match {type(module).__name__}: "
                         + "; ".join(parts))
    with torch.no_grad():
        for key, value in mapped.items():
            target[key].copy_(value)
    report.loaded = sorted(mapped)
    return report


def reference_state_dict(obj: Any, kind: str) -> dict[str, torch.Tensor]:
    """The state dict of ``kind`` inside a loaded reference checkpoint (a bare state dict or the scripts' dicts)."""
    if kind not in KINDS:
        raise ValueError(f"kind={kind!r}: allowed {list(KINDS)}")
    if isinstance(obj, nn.Module):
        raise ValueError("checkpoint is a pickled module, not a state dict; save module.state_dict() instead")
    if not isinstance(obj, Mapping) or not obj:
        raise ValueError(f"checkpoint holds a {type(obj).__name__}; expected a state dict or a dict with one under "
                         f"{list(CONTAINER_KEYS[kind])}")
    if all(torch.is_tensor(v) for v in obj.values()):
        return dict(obj)
    for key in CONTAINER_KEYS[kind]:
        inner = obj.get(key)
        if isinstance(inner, Mapping) and inner and all(torch.is_tensor(v) for v in inner.values()):
            return dict(inner)
    raise ValueError(f"checkpoint (keys {sorted(map(str, obj))[:10]}) has no kind={kind!r} state dict: expected "
                     f"a bare state dict or one under {list(CONTAINER_KEYS[kind])}")


def read_reference_checkpoint(path: str | Path, kind: str) -> dict[str, torch.Tensor]:
    """The ``kind`` state dict of a reference checkpoint file (read as tensors only: ``weights_only``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint={str(path)!r}: no such file")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001  (pickle errors of every kind: name the file and the fix)
        raise ValueError(f"checkpoint={str(path)!r}: not loadable as tensors only ({type(e).__name__}: {e}); "
                         "re-save its state_dict() with torch.save") from None
    return reference_state_dict(obj, kind)


def load_reference_checkpoint(path: str | Path, kind: str, module: nn.Module) -> LoadReport:
    """Read a reference checkpoint file into ``module`` (see ``load_reference_state``)."""
    return load_reference_state(kind, read_reference_checkpoint(path, kind), module)


def evaluate_reference_checkpoint(checkpoint: str | Path, dataset: str, data_root: str, *,
                                  tasks: list[str] | None = None, batch_size: int = 2,
                                  eval_samples: int | None = None, device: str = "auto") -> dict[str, dict]:
    """Metrics of a reference ``SegNet_MTL`` checkpoint on ``dataset``'s evaluation split, as the workbench
    computes them for its own runs (``mtlwb.evaluate``, backbone ``segnet``).

    ``tasks`` default to the dataset's task set (NYUv2: semantic, depth, normal; Cityscapes: semantic, depth).
    """
    from ..config import ExperimentConfig
    from ..data.registry import get_dataset
    from .loop import build_experiment, evaluate

    state = read_reference_checkpoint(checkpoint, "segnet_mtl")      # a bad file fails before any data is read
    config = ExperimentConfig(dataset=dataset, data_root=data_root,
                              tasks=list(tasks or get_dataset(dataset).default_tasks), backbone="segnet",
                              method="supervised", label_setting="full", train_samples=1,
                              eval_samples=eval_samples, batch_size=batch_size, device=device, progress=False)
    exp = build_experiment(config)
    load_reference_state("segnet_mtl", state, exp.model)
    exp.model.to(exp.device)
    metrics, _ = evaluate(exp)
    return metrics
