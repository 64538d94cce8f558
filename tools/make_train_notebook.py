"""Writes notebooks/train.ipynb from the cell sources below; then store its checked outputs with
``PYTHONPATH=$PWD .venv/bin/python tools/store_notebook.py notebooks/train.ipynb``. The sources here and the stored
notebook must agree (``tests/test_notebooks.py`` compares them)."""
import nbformat as nbf

from mtlwb.sweeps.notebook_params import check_cell_source

md = nbf.v4.new_markdown_cell
code = nbf.v4.new_code_cell


def tagged(src, *tags):
    c = code(src)
    c.metadata["tags"] = list(tags)
    return c


PARAMETERS = ('dataset = "scenes"\n'
              'data_root = "data/scenes-64x80"\n'
              '# tasks: dense semantic, depth, normal, edge; image-level (scenes) dominant_class, camera_view,\n'
              '# num_objects, camera_height, camera_pitch\n'
              'tasks = ["semantic", "depth", "normal"]\n'
              '# label_setting: full, onelabel, randomlabel, ratio:depth=1.0,semantic=0.1 or a mask file\n'
              'label_setting = "onelabel"\n'
              'mask_seed = 0\n'
              '# method: supervised, mtpsl, jtr, tpkr, diffusionmtl; method_options: its typed options (a dict)\n'
              'method = "supervised"\n'
              'method_options = {}\n'
              '# weighting: equal, uncertainty, dwa; task_weights: fixed factor per task loss, e.g. {"edge": 50.0}\n'
              'weighting = "equal"\n'
              'task_weights = {}\n'
              '# task_prior: known task relations, e.g. {"depth-normal": 1.0, "semantic-depth": 0.3}; None = none\n'
              'task_prior = None\n'
              '# loss_reduction: batch = per-sample losses, 0 where unlabelled, summed / B (MTPSL/JTR code);\n'
              '# labelled = mean over the labelled samples only (B/k times larger for a task labelled on k of B)\n'
              'loss_reduction = "batch"\n'
              '# edge_loss: balanced or mtl_pytorch; normal_loss: cosine or l1 (MTL-PyTorch PASCAL-Context)\n'
              'edge_loss = "balanced"\n'
              'normal_loss = "cosine"\n'
              '# regression_loss (image-level regression tasks): l1 or smooth_l1 of standardized values\n'
              'regression_loss = "l1"\n'
              '# backbone: resnet_small, resnet18, resnet50, segnet, resnet18_multiscale\n'
              '# backbone_weights: a local torchvision-layout file\n'
              'backbone = "resnet_small"\n'
              'backbone_weights = None\n'
              '# image_norm: auto (ImageNet mean/std iff backbone_weights), none, imagenet\n'
              'image_norm = "auto"\n'
              'epochs = 1\n'
              'batch_size = 16\n'
              'lr = 0.001\n'
              'weight_decay = 0.0\n'
              '# grad_clip: clip the L2 norm of all gradients to this per step (0 = off)\n'
              'grad_clip = 0.0\n'
              '# lr_schedule: step (x lr_gamma every lr_step epochs, 0 = halfway) or poly (x (1 - epoch/epochs)^0.9)\n'
              'lr_schedule = "step"\n'
              'lr_step = 0\n'
              'lr_gamma = 0.5\n'
              '# augment: the papers\' random scale-crop, flip and photometric jitter (real datasets)\n'
              'augment = False\n'
              '# normal_crop: how the scale-crop resizes normals: auto (nearest on the built-in scenes, bilinear\n'
              '# on the real datasets, as the references\' loaders), bilinear, nearest\n'
              'normal_crop = "auto"\n'
              'channels_last = False\n'
              'seed = 0\n'
              '# train_samples / eval_samples: first N images only; None = the whole split\n'
              'train_samples = 64\n'
              'eval_samples = 32\n'
              '# val_fraction: part of the training images held out for model selection (0 = none), drawn by\n'
              '# val_seed; eval_every: evaluate every k epochs (and always after the last)\n'
              'val_fraction = 0.0\n'
              'val_seed = 0\n'
              'eval_every = 1\n'
              '# diagnostics: at every evaluated epoch, do the auxiliary terms point where the hidden labels would?\n'
              '# (mtlwb/experiment/diagnostics.py; no effect on training), measured on diagnostics_probe training '
              'images\n'
              'diagnostics = False\n'
              'diagnostics_probe = 16\n'
              '# pseudo_labels: none, or normals_from_depth (the geometric oracle: normals computed from the\n'
              '# labelled depth and the camera where normals are unlabelled; data/pseudo_labels.py)\n'
              'pseudo_labels = "none"\n'
              'sources = []\n'
              '# device: auto, cpu, cuda; precision: fp32, bf16, fp16 (autocast)\n'
              'device = "auto"\n'
              'precision = "fp32"\n'
              'num_workers = 0\n'
              '# run_dir: "" = reports/runs/<run_id>\n'
              'run_dir = ""\n'
              'progress = True\n'
              '# reuse_finished_run: None = show the finished run of this method in finished_runs_dir (what\n'
              '# `make run` wrote) when the notebook runs with these stored parameters, train when papermill is\n'
              '# given parameters; True = load a finished run whenever there is one; False = always train\n'
              'reuse_finished_run = None\n'
              'finished_runs_dir = "reports/sweeps/quick"')

cells = [
    md("# Train one multi-task experiment\n\n"
       "Parameters below are the public interface (papermill, sweeps and the CLI use these names):\n\n"
       "`papermill notebooks/train.ipynb out.ipynb -p method jtr -p label_setting onelabel -p epochs 2 -p seed 0`\n\n"
       "A name the parameters cell does not define (`-p epoch 2`) is refused in the first code cell, naming the "
       "closest known one.\n\n"
       "**What it shows by default.** After `make run`, the finished run of the same method (and data, tasks, "
       "label setting) in `finished_runs_dir` (`reports/sweeps/quick/<run_id>/`: 1000 images, 5 epochs) is "
       "loaded instead of training; without one (a fresh clone, CI's nbval) the stored parameters train a tiny "
       "run (1 epoch on 64 images) whose predictions are still blank. The first output says which it did. "
       "Parameters given to papermill (`-p`) are always trained.\n\n"
       "To train for real here: `reuse_finished_run = False`, `epochs = 10`, `train_samples = None` (all 2000 "
       "training images) and `eval_samples = None`. Time on this 2-core CPU: `make run` trains 4 methods × 5 "
       "epochs × 1000 images in 161 s, about 8 s per epoch of 1000 images on average (supervised is the fastest, "
       "tpkr's steps take ~3× as long), so 10 epochs on 2000 images take about 3 min (1.5 min supervised, 4 min "
       "tpkr)."),
    tagged(PARAMETERS, "parameters"),
    code(check_cell_source(PARAMETERS)),
    # the first output says whether make run's finished run is shown or these parameters trained: it differs
    # between a fresh clone (what CI's nbval sees) and a checkout after `make run`, so nbval does not compare it
    tagged("import mtlwb\n"
           "from mtlwb import figures\n"
           "from mtlwb.analysis import records\n"
           "from mtlwb.data import ensure_dataset, ensure_sources\n"
           "from mtlwb.experiment.reuse import choose_run, train_or_load\n"
           "from mtlwb.sweeps.notebook_params import parameters_injected\n\n"
           "mtlwb.enter_project_root()\n"
           "figures.use_offline_renderer()\n"
           "# every ExperimentConfig field is a parameter above (a field missing there is refused here)\n"
           "config = mtlwb.ExperimentConfig.from_parameters(globals())\n"
           "# make run's finished run, or train these parameters: said first, before anything else happens\n"
           "injected = parameters_injected(globals())   # papermill -p: train what was asked\n"
           "finished_run, plan = choose_run(config, reuse_finished_run, finished_runs_dir, injected)\n"
           "print(plan)\n"
           "print(\"run id:\", config.run_id)\n"
           "if finished_run is None:\n"
           "    if dataset == \"scenes\":\n"
           "        ensure_dataset(data_root, tasks=tasks)   # adds image-level labels to an older copy if asked for\n"
           "    ensure_sources(config)  # extra training sources of dataset scenes, with their style",
           "nbval-ignore-output"),
    tagged("experiment, record = train_or_load(config, finished_runs_dir if finished_run else None)",
           "nbval-ignore-output"),
    md("## What ran\nCounts of labelled images per task come from the label setting's mask table."),
    tagged("records.run_summary(record)", "nbval-ignore-output"),
    md("## Final metrics (evaluation split)"),
    tagged("records.final_metrics_frame(record).round(4)", "nbval-ignore-output"),
    md("## Training curves"),
    tagged("figures.loss_curves(record).show()\nfigures.metric_curves(record).show()", "nbval-ignore-output"),
    md("## Predictions\nGround truth, prediction and per-pixel error for a few evaluation images."),
    tagged("figures.prediction_grid(experiment.model, experiment.method, experiment.eval_set, experiment.tasks,\n"
           "                        indices=[0, 1, 2], device=experiment.device).show()", "nbval-ignore-output"),
]
nb = nbf.v4.new_notebook(cells=cells)
for i, cell in enumerate(nb.cells):         # ids by position: regenerating changes only what changed
    cell.id = f"cell-{i}"
nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
nbf.write(nb, "notebooks/train.ipynb")
