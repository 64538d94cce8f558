"""mtlwb: a multi-task learning workbench for dense prediction from partially annotated data."""

from .config import ExperimentConfig
from .core.runtime import enter_project_root
from .experiment.loop import Experiment, build_experiment, evaluate, load_experiment, load_record, train

__all__ = ["Experiment", "ExperimentConfig", "build_experiment", "enter_project_root", "evaluate", "load_experiment",
           "load_record", "train"]
__version__ = "0.1.0"
