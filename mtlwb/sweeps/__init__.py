"""Layer 9, ablation sweeps: a YAML grid of training-notebook parameters, planned, run by papermill (locally or
on Dask), resumable, then summarised and reported."""
