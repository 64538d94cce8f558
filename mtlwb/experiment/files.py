"""The names of the files in a run folder and in a sweep folder, defined once: the trainer, the sweeps, the
analysis tables, the reuse of finished runs and the figures all read them from here, so a writer and its readers
never disagree about where a thing is.

A run folder (``reports/runs/<run_id>/``, or ``reports/sweeps/<sweep>/<run_id>/``)::

    checkpoint.pt       the last finished epoch's state (model, method, optimizer, ...): resume starts here
    metrics.json        the run record (``experiment/record.py``), rewritten after every epoch
    train.ipynb         the executed training notebook (sweep runs)
    kernel.log          what the run's process and its kernel printed (sweep runs)
    snapshots/          epoch-<e>.pt, every epoch's checkpoint where a run keeps them (figures.latent)
    tsne/               cached t-SNE embeddings of the run's figures

A sweep folder (``reports/sweeps/<name>/``)::

    state.json          one entry per run of the spec (status, parameters, effective config)
    summary.csv         every metric per group, mean / std / n and the paired statistics
    summary.md          verdicts and the main tables
    summary.html        the rendered report notebook, code hidden
    ablation_report.ipynb   that notebook as executed
    .sweep.lock         held by the one process that runs the sweep
    <run_id>/           a run folder per run
"""

from __future__ import annotations

# a run folder
CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.json"
RUN_NOTEBOOK = "train.ipynb"
KERNEL_LOG = "kernel.log"
SNAPSHOTS = "snapshots"
TSNE_CACHE = "tsne"

# a sweep folder
STATE = "state.json"
SUMMARY_CSV = "summary.csv"
SUMMARY_MD = "summary.md"
SUMMARY_HTML = "summary.html"
REPORT_NOTEBOOK = "ablation_report.ipynb"
SWEEP_LOCK = ".sweep.lock"
