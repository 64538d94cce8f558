"""The run record (metrics.json) has one schema (mtlwb/experiment/record.py) that the trainer writes and every
reader reads, and the run and sweep folders' file names are spelled in one module (mtlwb/experiment/files.py)."""

from __future__ import annotations

import typing
from pathlib import Path

import pytest

import mtlwb
from mtlwb.experiment import files
from mtlwb.experiment.record import EpochEntry, RunRecord, check_record, read_record


def _declared(schema) -> set[str]:
    return set(typing.get_type_hints(schema))


def test_a_trained_record_is_a_run_record_with_no_undeclared_field(tiny_config, tmp_path):
    config = tiny_config(epochs=2, val_fraction=0.25, eval_every=2, diagnostics=True, diagnostics_probe=4,
                         run_dir=str(tmp_path / "run"))
    record = mtlwb.train(config)
    check_record(record)                                          # every required field, every type
    assert set(record) <= _declared(RunRecord), set(record) - _declared(RunRecord)
    assert {"num_val", "val_ids", "best_val"} <= set(record)      # the optional fields of a validation split
    for entry in record["history"]:
        assert set(entry) <= _declared(EpochEntry), set(entry) - _declared(EpochEntry)
    assert "eval" not in record["history"][0] and "eval" in record["history"][1]   # eval_every=2
    assert "diagnostics" in record["history"][1]
    assert read_record(tmp_path / "run") == record


@pytest.mark.parametrize("change, message", [
    (lambda r: r.pop("final"), r"missing \['final'\]"),
    (lambda r: r.update(status="done"), r"status='done': allowed \['running', 'completed', 'failed'\]"),
    (lambda r: r.update(num_train="24"), r"num_train='24': expected <class 'int'>"),
    (lambda r: r.update(error=3), r"error=3"),
    (lambda r: r["history"][0].update(lr=True), r"history\[0\]\.lr=True"),
    (lambda r: r["history"][0].pop("train"), r"history\[0\]: missing \['train'\]"),
])
def test_a_record_off_the_schema_is_refused_naming_the_field(change, message):
    record = {"run_id": "r", "status": "completed", "error": None, "config": {}, "tasks": [], "num_train": 24,
              "num_eval": 8, "labelled_per_task": {}, "label_split": {}, "device": "cpu",
              "history": [{"epoch": 1, "lr": 0.001, "train": {}, "weights": {}, "seconds": 1.0}], "final": {}}
    check_record(record)
    change(record)
    with pytest.raises(ValueError, match=message):
        check_record(record)


def test_reading_is_tolerant_of_records_written_before_a_field_existed(tmp_path):
    """A record of an older mtlwb (no label_split, no device) still reads; one without a status does not."""
    from mtlwb.core.io import atomic_write_json

    atomic_write_json(tmp_path / files.METRICS, {"run_id": "r", "status": "completed", "config": {}, "final": {}})
    assert read_record(tmp_path)["status"] == "completed"
    atomic_write_json(tmp_path / files.METRICS, {"run_id": "r", "config": {}})
    with pytest.raises(ValueError, match=r"metrics.json: missing \['status'\]"):
        read_record(tmp_path)


def test_the_folder_file_names_are_spelled_in_one_module():
    package = Path(mtlwb.__file__).parent
    names = [f'"{v}"' for k, v in vars(files).items() if k.isupper() and isinstance(v, str) and "." in v]
    spelled = {str(p.relative_to(package)): [n for n in names if n in p.read_text()]
               for p in package.rglob("*.py") if p.name != "files.py"}
    assert not {k: v for k, v in spelled.items() if v}
