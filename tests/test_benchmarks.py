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


# -- the GPU benchmark (benchmarks/gpu.sh, gpu_bench.py, gpu_requirements.py) -----------------------------------------

import json  # noqa: E402
import os  # noqa: E402
import subprocess  # noqa: E402
import textwrap  # noqa: E402

import bench_published  # noqa: E402
import gpu_bench  # noqa: E402
import gpu_requirements  # noqa: E402
import run_all  # noqa: E402
import torch  # noqa: E402

from mtlwb.methods import METHODS, Method  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _table(text: str, header_start: str) -> list[dict[str, str]]:
    """The markdown table whose header line starts with ``header_start``, as dicts (cells stripped)."""
    lines = text.splitlines()
    i = next(k for k, line in enumerate(lines) if line.startswith(header_start))
    cols = [c.strip() for c in lines[i].strip("|").split("|")]
    rows = []
    for line in lines[i + 2:]:
        if not line.startswith("|"):
            break
        rows.append(dict(zip(cols, [c.strip() for c in line.strip("|").split("|")], strict=True)))
    return rows


def test_gpu_requirements_name_every_third_party_package_the_benchmark_imports():
    """gpu.sh installs only what gpu_requirements.NEEDED lists: every third-party module that the benchmark's
    worker imports must come from one of those distributions or from their (transitive) requirements."""
    probe = textwrap.dedent("""
        import importlib.metadata as md, json, re, sys, sysconfig
        sys.path.insert(0, "benchmarks")
        import gpu_bench, gpu_requirements
        import mtlwb.experiment.loop, mtlwb.data, mtlwb.config, mtlwb.core.runtime, mtlwb.objectives.weighting
        import mtlwb.models
        stdlib = sysconfig.get_paths()["stdlib"]
        tops = {m.split(".")[0] for m in sys.modules}
        owners = md.packages_distributions()
        imported = set()
        for top in tops:
            f = getattr(sys.modules.get(top), "__file__", None) or ""
            if "-packages" in f and not top.startswith("__editable__"):
                imported.update(d.lower().replace("_", "-") for d in owners.get(top, [top]))
        closure, todo = set(), [d for d in gpu_requirements.NEEDED.values()]
        while todo:
            d = todo.pop().lower().replace("_", "-")
            if d in closure:
                continue
            closure.add(d)
            try:
                todo += [re.split(r"[\\s<>=!~;\\[(]", r, maxsplit=1)[0] for r in (md.requires(d) or [])
                         if "extra ==" not in r]      # what an install brings, not the optional extras
            except md.PackageNotFoundError:
                pass
        print(json.dumps({"imported": sorted(imported), "closure": sorted(closure)}))
    """)
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    found = json.loads(out.stdout.strip().splitlines()[-1])
    assert "kornia" in found["imported"] and "torch" in found["imported"]
    assert set(found["imported"]) <= set(found["closure"]), set(found["imported"]) - set(found["closure"])


def test_gpu_requirements_report_the_missing_ones_with_the_pyproject_ranges():
    absent = {"kornia", "yaml"}
    missing = gpu_requirements.missing(find_spec=lambda m: None if m in absent else object())
    assert missing == ["pyyaml>=6", "kornia>=0.7"]
    assert gpu_requirements.missing(find_spec=lambda m: object()) == []


class _DummyMethod(Method):
    name = "zz_added_later"


def test_gpu_plan_measures_every_registered_method_with_its_protocol(monkeypatch):
    monkeypatch.setitem(METHODS, _DummyMethod.name, _DummyMethod)
    args = gpu_bench.parse_args([])
    assert args.methods[0] == "supervised" and set(args.methods) == set(METHODS)
    rows = gpu_bench.plan(args)
    steps = [r for r in rows if r["kind"] == "step"]
    assert len(steps) == len(METHODS) * 3 * 2                       # methods × precisions × sizes
    nyu = [r for r in steps if r["setting"] == "nyuv2"]
    city = [r for r in steps if r["setting"] == "cityscapes"]
    assert {(r["size"][0], r["size"][1], r["batch"]) for r in nyu} == {(288, 384, 8)}
    assert {(r["size"][0], r["size"][1], r["batch"]) for r in city} == {(128, 256, 16)}
    assert {tuple(r["tasks"]) for r in city} == {("semantic", "depth")}
    assert [r["precision"] for r in nyu[:len(METHODS)]] == ["fp32"] * len(METHODS)   # fp32 first
    jtr = next(r for r in nyu if r["method"] == "jtr")
    assert jtr["options"] == {"arch": "reference", "views": 3, "photometric": "randaugment",
                              "fidelity": "published_code"} and jtr["protocol"]
    mtpsl = next(r for r in nyu if r["method"] == "mtpsl")
    assert mtpsl["options"]["arch"] == "reference" and mtpsl["options"]["views"] == 2
    dummy = next(r for r in nyu if r["method"] == _DummyMethod.name)
    assert dummy["options"] == {} and gpu_bench._options_text(dummy) == "defaults (not in the sweep)"
    kinds = [r["kind"] for r in rows]
    assert kinds.index("data") < kinds.index("train") < max(i for i, r in enumerate(rows) if r in city)
    assert [r["method"] for r in rows if r["kind"] == "train"] == args.methods
    assert [r["id"] for r in rows] == list(range(len(rows)))


@pytest.mark.parametrize("argv, name", [(["--methods", "nope"], "--methods"), (["--precisions", "fp8"], "--precisions"),
                                        (["--sizes", "pascal"], "--sizes"), (["--budget", "0"], "--budget")])
def test_gpu_bench_refuses_bad_arguments_in_one_line(argv, name, capsys):
    with pytest.raises(SystemExit) as e:
        gpu_bench.parse_args(argv)
    assert e.value.code == 2
    assert name in capsys.readouterr().err.splitlines()[-1]


def test_a_failing_or_out_of_memory_row_is_a_status_not_an_exception(monkeypatch):
    row = {"kind": "step", "setting": "nyuv2", "dataset": "nyuv2", "size": [32, 64], "tasks": ["semantic", "depth"],
           "batch": 2, "method": "jtr", "options": {"no_such_option": 1}, "protocol": True, "precision": "fp32",
           "warmup": 1, "steps": 1, "timeout": 60, "device": "cpu", "id": 0}
    status = gpu_bench.run_row(row)["status"]
    assert status.startswith("failed: ValueError: method_options for method='jtr': unknown ['no_such_option']")

    def oom(row):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setitem(gpu_bench.MEASURE, "step", oom)
    assert gpu_bench.run_row(row) == {"status": "OOM"}


FAKE_WORKER = """
import json, os, sys, time
plan, events, start = sys.argv[1], sys.argv[2], int(sys.argv[4])
rows = json.load(open(plan))
if os.environ.get("FAKE_WORKER_BROKEN"):
    sys.exit(1)
def emit(e):
    with open(events, "a") as f:
        f.write(json.dumps(e) + "\\n")
emit({"event": "env", "gpu": "Fake GPU", "pid": os.getpid()})
for row in rows[start:]:
    emit({"event": "start", "id": row["id"]})
    if row["behaviour"] == "hang":
        time.sleep(60)
    if row["behaviour"] == "crash":
        os._exit(3)
    emit({"event": "done", "id": row["id"], "status": "ok", "ms/step": 1.0})
"""


def _fake_rows(*behaviours: str, timeout: float = 1.0) -> list[dict]:
    return [{"id": i, "kind": "step", "setting": "s", "size": [1, 1], "precision": "fp32", "method": f"m{i}",
             "behaviour": b, "timeout": timeout} for i, b in enumerate(behaviours)]


def _drive(tmp_path, rows, budget=60.0):
    script = tmp_path / "fake_worker.py"
    script.write_text(FAKE_WORKER)
    out = tmp_path / "out"
    cmd = [sys.executable, str(script), str(out / "plan.json"), str(out / "rows.jsonl")]
    return gpu_bench.drive(rows, out, budget, cmd, startup_timeout=20, poll=0.05, log=lambda line: None)


def test_drive_goes_on_after_a_row_that_hangs_or_kills_its_worker(tmp_path):
    results, env = _drive(tmp_path, _fake_rows("ok", "hang", "crash", "ok"))
    assert env["gpu"] == "Fake GPU"
    assert results[0] == {"status": "ok", "ms/step": 1.0} and results[3] == {"status": "ok", "ms/step": 1.0}
    assert results[1] == {"status": "timeout after 1 s"}
    assert results[2]["status"].startswith("crashed (worker exit code 3")
    pids = {json.loads(line).get("pid") for line in (tmp_path / "out" / "rows.jsonl").read_text().splitlines()}
    assert len(pids - {None}) == 3                     # a fresh worker after the timeout and after the crash


def test_drive_keeps_to_the_total_budget_and_reports_a_worker_that_cannot_start(tmp_path, monkeypatch):
    results, _ = _drive(tmp_path, _fake_rows("hang", "ok", timeout=30), budget=1.0)
    assert results[0]["status"] == "stopped: the total budget of 1 s ran out in this row"
    assert results[1]["status"] == "skipped: the total budget of 1 s was spent"
    monkeypatch.setenv("FAKE_WORKER_BROKEN", "1")
    results, _ = _drive(tmp_path, _fake_rows("ok", "ok"))
    assert {r["status"] for r in results.values()} == {
        "not run: the worker exited with code 1 before measuring (see worker.log)"}


@pytest.mark.slow
def test_gpu_sh_smoke_run_on_cpu_writes_the_tables(tmp_path):
    """The whole command on CPU at the tiny size: interpreter check, requirements, worker, report."""
    out = tmp_path / "gpu"
    env = dict(os.environ, MTLWB_PYTHON=sys.executable, MTLWB_GPU_VENV=str(tmp_path / "venv"))
    proc = subprocess.run(["bash", "benchmarks/gpu.sh", "--tiny", "--device", "cpu", "--methods", "supervised",
                           "--precisions", "fp32", "--sizes", "nyuv2", "--out", str(out)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert not (tmp_path / "venv").exists()             # nothing was missing: nothing installed
    text = (out / "bench_gpu.md").read_text()
    assert text in proc.stdout
    step = _table(text, "| size | tasks | batch | method | options | precision | ms/step | images/s | x sup. |")
    assert len(step) == 1
    row = step[0]
    assert (row["size"], row["tasks"], row["batch"], row["method"], row["precision"], row["status"]) == (
        "32x64", "semantic, depth, normal", "2", "supervised", "fp32", "ok")
    assert float(row["ms/step"]) > 0 and float(row["images/s"]) > 0 and float(row["peak MiB"]) > 0
    assert float(row["x sup."]) == 1
    train = _table(text, "| method | options | precision | epochs | train images | s/epoch | train images/s |")
    assert [(r["method"], r["epochs"], r["status"]) for r in train] == [("supervised", "1", "ok")]
    assert 0 <= float(train[0]["semantic miou"]) <= 1 and float(train[0]["depth abs_err"]) > 0
    events = [json.loads(line) for line in (out / "rows.jsonl").read_text().splitlines()]
    assert [e["event"] for e in events if e["event"] != "env"] == ["start", "done"] * 3


@pytest.mark.slow
def test_gpu_sh_says_in_one_line_what_it_could_not_install(tmp_path):
    bare = tmp_path / "bare"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True)
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    env = dict(os.environ, MTLWB_PYTHON=str(bare / "bin" / "python"), MTLWB_GPU_VENV=str(tmp_path / "venv"),
               MTLWB_WHEELS=str(wheels))
    env.pop("PYTHONPATH", None)
    proc = subprocess.run(["bash", "benchmarks/gpu.sh", "--tiny", "--device", "cpu"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("gpu.sh: could not install torch>=2.6,<3 ") and "MTLWB_WHEELS=<folder>" in last


# -- published code vs mtlwb (bench_published) ----------------------------------------------------------------------

FAKE_JTR = {
    "utils/__init__.py": "ORIGIN = 'jtr'\n",
    "utils/process.py": """
        def valid_mask(y):
            return (y.sum(dim=1, keepdim=True) != 0).float().cuda()   # .cuda() as the published code does
    """,
    "models/__init__.py": "",
    "models/nyuv2_segnet_mtl.py": """
        import torch
        import torch.nn.functional as F
        from torch import nn
        from utils.process import valid_mask

        class SegNet_MTL(nn.Module):
            def __init__(self, num_classes=13):
                super().__init__()
                self.conv = nn.Conv2d(3, num_classes + 4, 3, padding=1)
                self.num_classes = num_classes

            def forward(self, x):
                y = self.conv(x)
                seg, depth, normal = torch.split(y, [self.num_classes, 1, 3], dim=1)
                return [seg, depth, F.normalize(normal, dim=1)], [y]

            def compute_losses(self, seg, depth, normal, seg_t, depth_t, normal_t):
                mask = valid_mask(depth_t)
                return [F.cross_entropy(seg, seg_t, ignore_index=-1), ((depth - depth_t).abs() * mask).mean(),
                        1 - (normal * normal_t).sum(1).mean()]
    """,
    "models/nyuv2_segnet_jtr.py": """
        import copy
        import torch
        from torch import nn
        from utils.process import valid_mask

        class SegNet_JTR(nn.Module):
            def __init__(self, channel_dims):
                super().__init__()
                self.conv = nn.Conv2d(sum(channel_dims), 8, 3, padding=1)

            def compute_losses(self, items_1, items_2, labeled_tasks, num_classes, weight):
                frozen = copy.deepcopy(self)
                a = frozen.conv(torch.cat(items_1[:3], dim=1)).mean()
                b = self.conv(torch.cat([t.detach() for t in items_2[:3]], dim=1)).mean()
                return a.abs() + weight * b.abs(), (b * valid_mask(items_2[4])).abs().mean()
    """,
}
FAKE_MTPSL = {
    "utils/__init__.py": "ORIGIN = 'mtpsl'\n",
    "model/__init__.py": "",
    "model/segnet_mtl.py": """
        import torch
        import torch.nn.functional as F
        from torch import nn

        class SegNet(nn.Module):
            def __init__(self, type_='standard', class_nb=13):
                super().__init__()
                self.conv = nn.Conv2d(3, class_nb + 4, 3, padding=1)
                self.logsigma = nn.Parameter(torch.zeros(3))
                self.class_nb = class_nb

            def forward(self, x):
                y = self.conv(x)
                seg, depth, normal = torch.split(y, [self.class_nb, 1, 3], dim=1)
                return [F.log_softmax(seg, dim=1), depth, F.normalize(normal, dim=1)], self.logsigma, [y[:, :4], y]

            def model_fit(self, seg, seg_t, depth, depth_t, normal, normal_t):
                mask = (depth_t.sum(1, keepdim=True) != 0).float().cuda()
                return [F.nll_loss(seg, seg_t, ignore_index=-1), ((depth - depth_t).abs() * mask).mean(),
                        1 - (normal * normal_t).sum(1).mean()]
    """,
    "model/mapfns.py": """
        import torch
        from torch import nn
        from utils import ORIGIN   # this checkout's utils: the other checkout's must not shadow it

        assert ORIGIN == 'mtpsl', ORIGIN

        class Mapfns(nn.Module):
            def __init__(self, tasks, input_channels):
                super().__init__()
                self.conv = nn.Conv2d(sum(input_channels), 4, 1)
                self.gamma = nn.Parameter(torch.ones(4))
                self.beta = nn.Parameter(torch.zeros(4))

            def forward(self, x_pred, gt, feat, w, ssl_type):
                out = self.conv(torch.cat(x_pred, dim=1)) * self.gamma.view(1, -1, 1, 1) + self.beta.view(1, -1, 1, 1)
                return (out.mean() - feat.detach().mean()).abs()
    """,
}


def _write_tree(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(textwrap.dedent(text))
    return root


@pytest.mark.slow
def test_published_comparison_runs_given_codes_side_by_side_without_cuda(tmp_path):
    """Two checkouts with their own top-level `utils`, `.cuda()` calls on a CPU machine: both run, round-robin
    with mtlwb, and leave neither their packages in sys.modules nor the `.cuda()` patch behind."""
    jtr = _write_tree(tmp_path / "JTR-CVPR-2024" / "code", FAKE_JTR).parent        # the repo root: code/ is found
    mtpsl = _write_tree(tmp_path / "MTPSL", FAKE_MTPSL)
    cuda = torch.Tensor.cuda
    rows = bench_published.run(size=(32, 32), batch=2, repeats=1, warmup=0, methods=("supervised", "jtr", "mtpsl"),
                               environ={"MTLWB_JTR_CODE": str(jtr), "MTLWB_MTPSL_CODE": str(mtpsl)})
    assert torch.Tensor.cuda is cuda
    assert not [m for m in sys.modules if m.split(".")[0] in ("utils", "model", "models")]
    assert [r["variant"] for r in rows] == ["supervised", "JTR, 3 views", "MTPSL, 2 views"]
    assert all(r["published s"] > 0 and r["mtlwb s"] > 0 for r in rows)
    assert rows[1]["published code"] == str((jtr / "code").resolve())
    text = bench_published.report(rows)
    lines = text.splitlines()
    assert lines[0] == "| | published code | mtlwb | mtlwb / published |"
    assert lines[3].startswith("| JTR, 3 views, 25.0 M joint net | ") and "× supervised)" in lines[3]
    assert lines[3].rstrip(" |").endswith(("× faster", "× slower"))
    assert "- JTR, 3 views: the published network has 1,232 parameters, mtlwb's" in text   # the fake is tiny


def test_published_comparison_without_paths_says_not_given(tmp_path):
    rows = bench_published.run(size=(32, 32), batch=2, repeats=1, warmup=0, methods=("supervised",), environ={})
    assert rows[0]["published s"] is None and rows[0]["mtlwb s"] > 0
    line = bench_published.report(rows).splitlines()[2]
    assert line.startswith("| supervised | not given (set MTLWB_MTPSL_CODE) | ") and line.endswith("| – |")


def test_a_wrong_published_code_path_is_one_line_and_exit_2(tmp_path, monkeypatch, capsys):
    with pytest.raises(bench_published.CodePathError, match=r"^MTLWB_JTR_CODE='.*': no models/nyuv2_segnet_mtl.py"):
        bench_published.published_code({"MTLWB_JTR_CODE": str(tmp_path)})
    monkeypatch.setenv("MTLWB_MTPSL_CODE", str(tmp_path / "nowhere"))
    assert run_all.main(["--only", "bench_published", "--out", str(tmp_path / "b.md")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("run_all: MTLWB_MTPSL_CODE=") and not (tmp_path / "b.md").exists()


def test_the_training_benchmark_times_every_registered_method():
    """A method added to the registry is timed by `make bench` (DiffusionMTL was missing from it)."""
    import bench_training

    timed = {bench_training.ARMS.get(label, (label, None))[0] for label in bench_training.METHODS}
    assert timed == set(METHODS)
    step = bench_training.make_train_step("diffusionmtl", batch=2, size=(16, 20))
    assert torch.isfinite(torch.tensor(step()))                    # one step of the new row runs


# -- where a reference-layout step spends its time (bench_profile) ---------------------------------------------------

import bench_profile  # noqa: E402


def test_profile_runs_every_protocol_at_a_tiny_size_and_prints_its_tables():
    """Phases, floors and the torch.profiler operator table of each reference-layout protocol, on CPU at 32×32."""
    rows = bench_profile.run(batch=2, size=(32, 32), repeats=1, top=3)
    phases = [r for r in rows if r["part"] == "phases" and r["precision"] == "fp32"]
    assert [r["protocol"] for r in phases][:3] == list(bench_profile.PROTOCOLS)
    assert phases[0]["x sup."] == 1.0 and all(r["step ms"] > 0 for r in phases)
    assert any("one graph" in r["protocol"] for r in phases)          # JTR before detached_views, for the ratio
    for r in phases:
        assert r["step ms"] == pytest.approx(sum(r[f"{p} ms"] for p in bench_profile.PHASES))
    ops = [r for r in rows if r["part"] == "operators"]
    assert {r["protocol"] for r in ops} == set(bench_profile.PROTOCOLS)
    assert all(len([r for r in ops if r["protocol"] == p]) == 3 for p in bench_profile.PROTOCOLS)
    assert all(0 < r["self CPU %"] <= 100 and r["calls"] >= 1 for r in ops)
    floors = [r for r in rows if r["part"] == "floors"]
    assert len(floors) == 3 + 2 and all(r["ms"] > 0 for r in floors)
    text = bench_profile.report(rows)
    assert "Top operators by self CPU time (two steps):" in text
    assert "| jtr reference, 3 views + RandAugment | fp32 |" in text
    assert "profile" in run_all.SECTIONS[[m for _, m in run_all.SECTIONS].index(bench_profile)][0]
