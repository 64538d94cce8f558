"""Writes notebooks/{dataset_explorer,task_affinity,joint_latent,diagnostics,ablation_report}.ipynb from the cell
sources below (only those named, e.g. ``notebooks/ablation_report.ipynb``, when given); ``--execute`` then stores
their checked outputs (``tools/store_notebook.py``). Run from the project root:
``PYTHONPATH=$PWD .venv/bin/python tools/make_analysis_notebooks.py [notebooks/<name>.ipynb ...] --execute``.
The sources here and the stored notebooks must agree (``tests/test_notebooks.py`` compares them).

Stored defaults are tiny so nbval re-executes each notebook in well under a minute. Cells whose output holds
random ids (plotly, widgets) or timings are tagged ``nbval-ignore-output``; deterministic tables are checked.
"""
import nbformat as nbf

from mtlwb.sweeps.notebook_params import check_cell_source

md = nbf.v4.new_markdown_cell
code = nbf.v4.new_code_cell
IGNORE = "nbval-ignore-output"


def tagged(src: str, *tags: str):
    c = code(src)
    c.metadata["tags"] = list(tags)
    return c


SETUP = "from pathlib import Path\n"
CHDIR = "\nmtlwb.enter_project_root()  # nbval and JupyterLab start kernels in notebooks/: paths are from the root\n"


def with_parameter_check(cells: list) -> list:
    """Insert, right after the ``parameters`` cell, the cell that refuses a name papermill injected but the
    parameters cell does not define (papermill's own injected cell lands between the two)."""
    at = next(i for i, c in enumerate(cells) if "parameters" in c.metadata.get("tags", [])) + 1
    return [*cells[:at], code(check_cell_source(cells[at - 1].source)), *cells[at:]]


NOTEBOOKS: dict[str, list] = {}   # path -> cells, in the order below


def write(path: str, cells: list) -> None:
    """Register a notebook's cells; ``__main__`` writes the notebooks asked for (all by default)."""
    NOTEBOOKS[path] = cells


def write_notebook(path: str, cells: list) -> None:
    nb = nbf.v4.new_notebook(cells=with_parameter_check(cells))
    for i, cell in enumerate(nb.cells):     # ids by position: regenerating changes only what changed
        cell.id = f"cell-{i}"
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbf.write(nb, path)


write("notebooks/dataset_explorer.ipynb", [
    md("# Dataset explorer\n\n"
       "Browse images with their ground truth, see which tasks a partial-label setting keeps for each image "
       "(faded, cross-hatched panels are *not* labelled), the class content, and how many images each setting "
       "labels per task. Open with `make lab`; the slider and toggles need a live kernel, the static grid below "
       "them is what exported reports show."),
    tagged('data_root = "data/scenes-64x80"\n'
           'tasks = ["semantic", "depth", "normal"]\n'
           '# setting shown on the samples: full, onelabel, randomlabel, ratio:semantic=0.1, ...\n'
           'label_setting = "onelabel"\n'
           'settings = ["full", "onelabel", "randomlabel", "ratio:semantic=0.1", "ratio:depth=0.25,normal=0.5"]\n'
           'mask_seed = 0\n'
           'indices = [0, 1, 2, 3]\n'
           '# images read for the class histogram (None = the whole split)\n'
           'hist_images = 300\n'
           '# a second rendering style shown beside the default one (data/style.py: "B" or a dict of parameters)\n'
           'style = "B"\n'
           '# a second root to browse (e.g. a generated style-B training source); None = off\n'
           'second_root = None\n'
           'export_dir = "reports/figures/dataset_explorer"', "parameters"),
    code(SETUP + "\n"
         "import mtlwb\n"
         "from mtlwb import figures\n"
         "from mtlwb.core.io import read_json\n"
         "from mtlwb.data import MultiTaskFolder, ensure_dataset, make_mask\n"
         "from mtlwb.data.folder import dataset_num_classes\n"
         "from mtlwb.tasks import make_tasks\n"
         + CHDIR +
         "figures.use_offline_renderer()\n"
         "ensure_dataset(data_root)\n"
         "task_specs = make_tasks(tasks, dataset_num_classes(data_root))\n"
         "train_set = MultiTaskFolder(data_root, \"train\", task_specs)\n"
         "meta = Path(data_root) / \"meta.json\"\n"
         "class_names = read_json(meta)[\"class_names\"] if meta.is_file() else None\n"
         "table = make_mask(label_setting, len(train_set), tasks, mask_seed)\n"
         "print(f\"{len(train_set)} training images, tasks {tasks}, classes {class_names}\")"),
    md("## Labelled images per task, for each setting\n"
       "The same tables training uses (generated from `mask_seed`); deterministic, so CI checks these numbers."),
    code("counts = figures.label_count_table(len(train_set), tasks, settings, mask_seed)\ncounts"),
    tagged("figures.label_count_figure(counts, tasks).show()", IGNORE),
    md("## Browse samples\nSlider: image index; toggles: tasks to show. Labels follow `label_setting`."),
    tagged("figures.sample_browser(train_set, task_specs, table, label_setting)", IGNORE),
    md("Static view of `indices` (what an exported report shows):"),
    code("print({i: [t for j, t in enumerate(tasks) if table[i, j]] for i in indices})"),
    tagged("grid = figures.sample_grid(train_set, task_specs, indices, table, setting=label_setting)\ngrid.show()",
           IGNORE),
    md("Image-level labels of the same images (built-in scenes; computed from each scene's geometry: add e.g. "
       "`\"num_objects\"` to `tasks` to train on them)."),
    code("figures.image_label_table(data_root, \"train\", indices)"),
    md("## Class content"),
    tagged("hist = figures.class_histogram(train_set, class_names, limit=hist_images)\nhist.show()", IGNORE),
    md("## Two styles: the domain gap of a second source\n"
       "The scenes of `indices` rendered in the default style and in `style`: the same rooms (same seeds), so "
       "semantic, depth and normal maps are identical, while colours, textures, light and sensor noise differ. "
       "A source in another style is what `config.sources` trains on beside the main one (README, *Several "
       "training sources*)."),
    code("import numpy as np\n"
         "import pandas as pd\n\n"
         "from mtlwb.data.generate import scene_seed\n"
         "from mtlwb.data.scenes import render_scene\n\n"
         "h, w = train_set.image_size\n"
         "seeds = [scene_seed(read_json(meta).get(\"seed\", 0), \"train\", i) for i in indices]\n"
         "styled = {name: [render_scene(s, h, w, style=look) for s in seeds]\n"
         "          for name, look in ((\"default\", \"default\"), (str(style), style))}\n"
         "(a_name, a), (b_name, b) = styled.items()\n"
         "print(\"labels identical across styles:\", all(np.array_equal(x[k], y[k]) for x, y in zip(a, b)\n"
         "                                               for k in (\"label\", \"depth\", \"normal\")))\n"
         "pd.DataFrame({name: {**{f\"mean {c}\": float(np.mean([r['image'][..., j].mean() for r in rs]))\n"
         "                        for j, c in enumerate(\"RGB\")},\n"
         "                     \"contrast (std)\": float(np.mean([r['image'].std() for r in rs]))}\n"
         "              for name, rs in styled.items()}).T.round(3)"),
    tagged("figures.dataset.style_comparison({name: [r[\"image\"] for r in rs] for name, rs in styled.items()},\n"
           "                                 indices).show()", IGNORE),
    tagged("if second_root:\n"
           "    second = MultiTaskFolder(second_root, \"train\", task_specs)\n"
           "    print(read_json(Path(second_root) / \"meta.json\").get(\"style\"))\n"
           "    figures.sample_grid(second, task_specs, indices, make_mask(\"full\", len(second), tasks),\n"
           "                        setting=\"full\").show()", IGNORE),
    md("## Export\nInteractive HTML always; PNG when a Chromium is present (`figures.find_browser()`)."),
    tagged("for name, fig in {\"samples\": grid, \"class_histogram\": hist,\n"
           "                  \"label_counts\": figures.label_count_figure(counts, tasks)}.items():\n"
           "    print(figures.export_figure(fig, export_dir, name))", IGNORE),
])

write("notebooks/task_affinity.ipynb", [
    md("# Task affinity and prototypes\n\n"
       "For a **tpkr** run: the T×T affinity of each task's features to the prototype slots (test-averaged), how it "
       "formed over the epochs, the prototype slots themselves, and one image's own affinity. For **any** run: the "
       "method-independent gradient-cosine affinity on the shared encoder, beside the prototype one. When the run "
       "was given prior knowledge of task relations (`task_prior`), the prior is shown beside both.\n\n"
       "With `run_dir = None` the notebook shows its own tiny run (so it is self-contained), with `task_prior`, "
       "trained into `reports/runs/nb-task-affinity` unless a finished run of exactly these parameters is there "
       "(a run of other parameters is moved aside, never shown). Set `run_dir` to a finished run to show that one."),
    tagged('# a finished run to show (any method), or None: the tiny run of the parameters below\n'
           'run_dir = None\n'
           'method = "tpkr"\n'
           'label_setting = "onelabel"\n'
           'epochs = 3\n'
           'train_samples = 48\n'
           'eval_samples = 16\n'
           '# known task relations given to the tiny run (None = no prior): normals are a function of depth\n'
           'task_prior = {"depth-normal": 1.0, "semantic-depth": 0.3}\n'
           '# evaluation image for the per-image affinity\n'
           'image_index = 0\n'
           '# gradient affinity: batches of the evaluation split\n'
           'grad_batches = 2\n'
           'grad_batch_size = 8\n'
           'export_dir = "reports/figures/task_affinity"', "parameters"),
    code(
         "import mtlwb\n"
         "from mtlwb import figures\n"
           "from mtlwb.analysis import records\n"
         "from mtlwb.data import ensure_dataset\n"
         "from mtlwb.experiment.reuse import notebook_run\n"
         + CHDIR +
         "figures.use_offline_renderer()\n"
         "if run_dir is None:\n"
         "    ensure_dataset(\"data/scenes-64x80\")\n"
         "own = mtlwb.ExperimentConfig(method=method, label_setting=label_setting, epochs=epochs,\n"
         "                             train_samples=train_samples, eval_samples=eval_samples, task_prior=task_prior,\n"
         "                             run_dir=\"reports/runs/nb-task-affinity\", progress=False)\n"
         "run_dir = notebook_run(run_dir, own)\n"
         "record = mtlwb.load_record(run_dir)\n"
         "exp = mtlwb.load_experiment(run_dir, device=\"cpu\")\n"
         "names = [t.name for t in exp.tasks]\n"
         "is_tpkr = record[\"config\"][\"method\"] == \"tpkr\"\n"
         "prior = exp.config.task_prior_matrix  # the run's own prior (parsed), None without one\n"
         "print(\"task prior:\", None if prior is None else prior.double().numpy().round(2).tolist())\n"
         "records.run_summary(record)"),
    md("## Test-averaged affinity\nRow *t*: how task *t*'s features distribute over the prototype slots "
       "(rows sum to 1). A strong diagonal = tasks keep their identity; off-diagonal mass = knowledge retrieved "
       "from other tasks."),
    tagged("if is_tpkr:\n"
           "    heat = figures.record_affinity_heatmap(record)\n"
           "    heat.show()\n"
           "else:\n"
           "    print(f\"method {record['config']['method']!r}: no prototype affinity (see the gradient affinity)\")",
           IGNORE),
    md("## Evolution over epochs\nPress ▶ or drag the slider (frames = epochs, from the run's history)."),
    tagged("if is_tpkr:\n"
           "    figures.affinity_evolution(record).show()\n"
           "    figures.affinity_trajectories(record).show()", IGNORE),
    md("## Prototype slots\nCosine similarity between slots, and a PCA plane of the unit slots with the task keys "
       "of a few evaluation images (the vectors the affinity compares against the slots)."),
    tagged("if is_tpkr:\n"
           "    slots = exp.method.prototype_slots()\n"
           "    figures.prototype_similarity(slots, names).show()\n"
           "    keys, key_tasks = figures.affinity.task_keys(exp, range(min(16, len(exp.eval_set))))\n"
           "    figures.prototype_projection(slots, names, keys, key_tasks).show()", IGNORE),
    md("## One image\nThe slider picks another evaluation image (live kernel); `image_index` sets the start."),
    tagged("if is_tpkr:\n"
           "    display(figures.image_affinity_browser(exp, image_index))", IGNORE),
    md("## Gradient affinity (any method)\nCosine similarity of the per-task loss gradients on the shared encoder, "
       "averaged over a few fully labelled evaluation batches: +1 tasks agree, −1 they conflict."),
    tagged("grad = figures.gradient_affinity(exp, batches=grad_batches, batch_size=grad_batch_size)\n"
           "print(\"symmetric:\", bool((abs(grad - grad.T) < 1e-6).all()), \"| diagonal:\", grad.diagonal().round(3))",
           IGNORE),
    md("## Assumed and learned\nThe prior the run was given (if any) beside the prototype affinity (tpkr) and the "
       "gradient cosine: did training find the relations the prior states, or others?"),
    tagged("proto = record[\"history\"][-1][\"summaries\"][\"affinity\"] if is_tpkr else None\n"
           "side = figures.task_relations(names, prior=prior, prototype=proto, gradient=grad)\n"
           "side.show()", IGNORE),
    md("## Export"),
    tagged("out = {\"affinity_comparison\": side}\n"
           "if is_tpkr:\n"
           "    out.update(affinity=heat, affinity_evolution=figures.affinity_evolution(record))\n"
           "for name, fig in out.items():\n"
           "    print(figures.export_figure(fig, export_dir, name, png=name != \"affinity_evolution\"))", IGNORE),
])

write("notebooks/joint_latent.ipynb", [
    md("# Joint latent space\n\n"
       "For a **JTR** run: t-SNE of the joint-task codes of the predictions (circles) and of the mixed targets "
       "(diamonds; ground truth where labelled, prediction elsewhere), coloured by which tasks were labelled, by "
       "dominant class, and by epoch when the run kept epoch snapshots. For **any** run: t-SNE of the per-task "
       "features the heads read, coloured by task. Embeddings are cached in `<run_dir>/tsne/` keyed by a hash of "
       "the inputs, so re-running is instant.\n\n"
       "With `run_dir = None` the notebook shows its own tiny JTR run with epoch snapshots, trained into "
       "`reports/runs/nb-joint-latent` unless a finished run of exactly these parameters is there (a run of other "
       "parameters is moved aside, never shown). Set `run_dir` to a finished run to show that one."),
    tagged('# a finished run to show (any method), or None: the tiny run of the parameters below (epoch snapshots)\n'
           'run_dir = None\n'
           'method = "jtr"\n'
           'label_setting = "onelabel"\n'
           'epochs = 2\n'
           'train_samples = 64\n'
           'eval_samples = 32\n'
           '# training images whose codes are embedded; pool: "mean" (one point per image) or "positions"\n'
           'n_images = 64\n'
           'pool = "mean"\n'
           'positions = 4\n'
           'perplexity = 20.0\n'
           'export_dir = "reports/figures/joint_latent"', "parameters"),
    code(SETUP + "\n"
         "import mtlwb\n"
         "from mtlwb import figures\n"
           "from mtlwb.analysis import records\n"
         "from mtlwb.core.io import read_json\n"
         "from mtlwb.data import ensure_dataset\n"
         "from mtlwb.experiment.reuse import notebook_run\n"
         + CHDIR +
         "figures.use_offline_renderer()\n"
         "if run_dir is None:\n"
         "    ensure_dataset(\"data/scenes-64x80\")\n"
         "own = mtlwb.ExperimentConfig(method=method, label_setting=label_setting, epochs=epochs, lr_step=epochs,\n"
         "                             train_samples=train_samples, eval_samples=eval_samples,\n"
         "                             run_dir=\"reports/runs/nb-joint-latent\", progress=False)\n"
         "run_dir = notebook_run(run_dir, own, figures.latent.train_with_snapshots)\n"
         "record = mtlwb.load_record(run_dir)\n"
         "exp = mtlwb.load_experiment(run_dir, device=\"cpu\")\n"
         "meta = Path(exp.config.data_root) / \"meta.json\"\n"
         "class_names = read_json(meta)[\"class_names\"] if meta.is_file() else None\n"
         "has_codes = hasattr(exp.method, \"joint_codes\")\n"
         "print(\"snapshots kept for epochs:\", list(figures.latent.snapshot_paths(run_dir)))\n"
         "records.run_summary(record)"),
    md("## Joint codes, coloured by the labelled tasks\nIf the joint space does its job, an image's prediction "
       "and mixed target sit together whatever it was labelled for."),
    tagged("if has_codes:\n"
           "    by_label = figures.joint_latent_figure(exp, run_dir, \"labelled\", n_images, pool, positions,\n"
           "                                           perplexity, class_names)\n"
           "    by_label.show()\n"
           "else:\n"
           "    print(f\"method {exp.config.method!r} has no joint codes (JTR only); see the task features below\")",
           IGNORE),
    md("## Coloured by dominant class\nPer image (mean pooling) or per sampled code position (`pool=\"positions\"`)."),
    tagged("if has_codes:\n"
           "    figures.joint_latent_figure(exp, run_dir, \"dominant class\", n_images, pool, positions, perplexity,\n"
           "                                class_names).show()\n"
           "    figures.joint_latent_figure(exp, run_dir, \"dominant class\", n_images, \"positions\", positions,\n"
           "                                perplexity, class_names).show()", IGNORE),
    md("## Over epochs\nOne embedding of the codes of every epoch snapshot (runs trained with "
       "`figures.latent.train_with_snapshots`)."),
    tagged("epochs_fig = figures.joint_latent_over_epochs(exp, run_dir, n_images=min(n_images, 32),\n"
           "                                             perplexity=perplexity) if has_codes else None\n"
           "if epochs_fig is None:\n"
           "    print(\"no epoch snapshots in\", run_dir)\n"
           "else:\n"
           "    epochs_fig.show()\n"
           "    exp = mtlwb.load_experiment(run_dir, device=\"cpu\")  # back to the final weights", IGNORE),
    md("## Per-task features (any method)\nThe refined features each head reads, mean-pooled per image. Only a "
       "method that refines the shared feature per task (tpkr) gives each head its own; for the others (supervised, "
       "mtpsl, jtr) every head reads the same feature, and the figure shows each image once and says so."),
    tagged("tasks_fig = figures.task_feature_figure(exp, run_dir, n_images=min(n_images, 48), perplexity=perplexity)\n"
           "tasks_fig.show()", IGNORE),
    code("print(\"cached embeddings:\", len(list((Path(run_dir) / \"tsne\").glob(\"*.npz\"))) > 0)"),
    md("## Export"),
    tagged("out = {\"task_features\": tasks_fig}\n"
           "if has_codes:\n"
           "    out[\"joint_codes\"] = by_label\n"
           "for name, fig in out.items():\n"
           "    print(figures.export_figure(fig, export_dir, name))", IGNORE),
])

write("notebooks/diagnostics.ipynb", [
    md("# Mechanism diagnostics: does the cross-task signal point where the hidden labels would?\n\n"
       "A run trained with `diagnostics=True` measures, at every evaluated epoch and on a fixed probe of training "
       "images, what its method's auxiliary terms do to the tasks that are *hidden* on an image, against what the "
       "hidden ground truth (kept by the built-in scenes) would do (`mtlwb/experiment/diagnostics.py`; docs, "
       "*Mechanism diagnostics*).\n\n"
       "With `run_dir = None` the notebook shows its own tiny run — depth labelled on every image, normals on a "
       "quarter, the setting where depth carries what normals need — trained into `reports/runs/nb-diagnostics` "
       "unless a finished run of exactly these parameters is there (a run of other parameters is moved aside, never "
       "shown). Set `run_dir` to a finished run trained with `diagnostics=True` to show that one."),
    tagged('# a finished run to show (trained with diagnostics=True), or None: the tiny run of the parameters below\n'
           'run_dir = None\n'
           'method = "mtpsl"\n'
           'tasks = ["depth", "normal"]\n'
           'label_setting = "ratio:depth=1.0,normal=0.25"\n'
           'epochs = 3\n'
           'train_samples = 32\n'
           'eval_samples = 16\n'
           '# images of the fixed probe the diagnostics are measured on\n'
           'diagnostics_probe = 8\n'
           'export_dir = "reports/figures/diagnostics"', "parameters"),
    code("import mtlwb\n"
         "from mtlwb import figures\n"
         "from mtlwb.analysis import records\n"
         "from mtlwb.data import ensure_dataset\n"
         "from mtlwb.experiment import diagnostics\n"
         "from mtlwb.experiment.reuse import notebook_run\n"
         + CHDIR +
         "figures.use_offline_renderer()\n"
         "if run_dir is None:\n"
         "    ensure_dataset(\"data/scenes-64x80\")\n"
         "own = mtlwb.ExperimentConfig(method=method, tasks=tasks, label_setting=label_setting, epochs=epochs,\n"
         "                             train_samples=train_samples, eval_samples=eval_samples, diagnostics=True,\n"
         "                             diagnostics_probe=diagnostics_probe, run_dir=\"reports/runs/nb-diagnostics\",\n"
         "                             progress=False)\n"
         "run_dir = notebook_run(run_dir, own)\n"
         "record = mtlwb.load_record(run_dir)\n"
         "measured = [h for h in record[\"history\"] if \"diagnostics\" in h]\n"
         "curves = diagnostics.history_frame(record[\"history\"])\n"
         "if not measured:\n"
         "    print(f\"{str(run_dir)!r} recorded no diagnostics: train it with diagnostics=True\")\n"
         "records.run_summary(record)"),
    md("## What was measured\nThe method's auxiliary terms (those added to the supervised losses), whether they read "
       "the task predictions at all (TPKR's do not; supervised-only and DiffusionMTL have none), and the probe."),
    code("last = measured[-1][\"diagnostics\"] if measured else {}\n"
         "print(\"auxiliary terms:\", last.get(\"auxiliary_terms\"), \"| read the predictions:\",\n"
         "      last.get(\"reads_predictions\"))\n"
         "print(\"probe:\", {k: v for k, v in last.get(\"probe\", {}).items() if k != \"positions\"},\n"
         "      \"| epochs measured:\", [h[\"epoch\"] for h in measured])"),
    md("## How to read it\n"
       "- **prediction cos**: over the probe images where a task is hidden, the cosine between the gradient the "
       "auxiliary terms send into that task's prediction and the gradient its hidden label would send. 1 = the term "
       "pushes the prediction as the label would; 0 = unrelated (noise, or a term that ignores the task); negative = "
       "away from the truth. **share cos > 0**: on how many of those images it points the right way at all. "
       "**‖g_aux‖ / ‖g_sup‖**: how large that push is against the supervised gradient a labelled image gets — a "
       "well-aligned but tiny signal does little, a large unaligned one does harm.\n"
       "- **backbone cos**: the same question on the shared encoder's weights, the only place where a method that "
       "never reads predictions (TPKR) can help the hidden tasks. Compare it with the **yardstick**, the cosine of "
       "the labelled supervision's gradient with the hidden labels': how far the labels given already point "
       "where the hidden ones would.\n"
       "- **landscape** (`L_aux at …`): the auxiliary term with the hidden entries set to the prediction, the ground "
       "truth, a perturbed truth, a constant and noise. A term whose value is lowest at the truth rewards the truth; "
       "one lower at the prediction than at the truth pulls the model toward its own guesses."),
    tagged("diagnostics.epoch_table(measured[-1]).round(3) if measured else None", IGNORE),
    md("## Over the epochs\nTop: prediction level; bottom: shared encoder. Dashed: 0 (unrelated to the hidden label)."),
    tagged("alignment = figures.alignment_over_epochs(curves) if last.get(\"auxiliary_terms\") else None\n"
           "if alignment is None:\n"
           "    print(\"no auxiliary term: nothing to align (the yardstick is in the table above)\")\n"
           "else:\n"
           "    alignment.show()", IGNORE),
    md("## Landscape at the last measured epoch"),
    tagged("landscape = figures.landscape_chart(curves) if last.get(\"reads_predictions\") else None\n"
           "if landscape is None:\n"
           "    print(\"the auxiliary terms read no prediction: no landscape\")\n"
           "else:\n"
           "    landscape.show()", IGNORE),
    md("## Export"),
    tagged("for name, fig in {\"alignment\": alignment, \"landscape\": landscape}.items():\n"
           "    if fig is not None:\n"
           "        print(figures.export_figure(fig, export_dir, name))", IGNORE),
])


# --- ablation report: what summary.html shows (rendered with code cells hidden, so the reader sees one screen) ---
# Order: which sweep, the verdict, the metrics table right under it, then the details (paired changes, curves,
# per source, bars): the two things a reader came for fit the first screen.
write("notebooks/ablation_report.ipynb", [
    md("# Ablation sweep report\n\n"
       "Summary of one sweep folder (`reports/sweeps/<name>/`, written by `mtlwb sweep sweeps/<name>.yaml`). All "
       "numbers come from `mtlwb.analysis.tables` and `mtlwb.analysis.stats`; this notebook only shows them. "
       "`papermill notebooks/ablation_report.ipynb out.ipynb -p sweep_dir reports/sweeps/<name>`; with the "
       "default `sweep_dir = None` it shows the sweep `make run` wrote."),
    tagged('# the sweep folder to report; None = reports/sweeps/quick (what `make run` writes) if it exists\n'
           'sweep_dir = None\n'
           '# which test metrics each run contributes: auto (best epoch on validation where the run has a\n'
           '# validation split, else the last epoch), best_val, last\n'
           'select = "auto"', "parameters"),
    tagged("from IPython.display import Markdown, display\n\n"
           "import mtlwb\n"
           "from mtlwb import figures\n"
           "from mtlwb.analysis import tables\n"
           + CHDIR +
           "figures.use_offline_renderer()\n"
           "# a path that is no sweep folder, or one with no finished run, is refused here in one line\n"
           "sweep_dir = tables.report_sweep_dir(sweep_dir)\n"
           "table = tables.load_table(sweep_dir, select) if sweep_dir else None\n"
           "display(Markdown(tables.report_header(table, sweep_dir, select) if table else\n"
           "                 \"No sweep to show: `make run` writes `reports/sweeps/quick`, or pass \"\n"
           "                 \"`-p sweep_dir reports/sweeps/<name>`.\"))", IGNORE),
    md("## Verdict\nEach group against its baseline group, paired by seed: mean per-seed Δ_MTL with its 95 % "
       "t-interval, the number of paired seeds and the paired t-test's p. *Significant* means the interval "
       "excludes 0; below 3 paired seeds no interval is given (*n too small*)."),
    tagged("if table:\n"
           "    lines = tables.verdicts(table) or [\"no group is compared with a baseline\"]\n"
           "    display(Markdown(\"\\n\".join(f\"- **{line}**\" for line in lines)\n"
           "                     + f\"\\n\\n_{tables.selection_caption(table)}_\"))", IGNORE),
    md("## Metrics per group\nRows are run groups (every parameter except the seed); primary metric per task as "
       "mean ± std over seeds (↑ higher / ↓ lower is better); Δ_MTL (%) of the seed-averaged metrics relative to "
       "the baseline named in the column header, then its paired estimate over the seeds both groups ran."),
    tagged("tables.display_table(table) if table else None", IGNORE),
    tagged("if table:\n"
           "    for note in tables.describe(table):\n"
           "        print(note)\n"
           "    if not table.failures.empty:\n"
           "        display(table.failures)", IGNORE),
    md("## Change vs the baseline, per task\n% of the baseline's primary metric, positive = better. Diamond: "
       "mean over the paired seeds, error bars: its 95 % confidence interval, circles: the seeds; an interval "
       "that does not cross the dashed zero line is a change beyond the seed noise."),
    tagged("tables.change_table(table) if table else None", IGNORE),
    tagged("for fig in (figures.change_charts(table) if table and table.comparisons else []):\n"
           "    fig.show()", IGNORE),
    md("## Does the cross-task signal point where the hidden labels would?\nFor runs trained with `diagnostics: "
       "true` (`mtlwb/diagnostics.py`), at the selected epoch, mean [95 % CI] over seeds; README, *Mechanism "
       "diagnostics*. Below: the prediction- and encoder-level cosines over the epochs, one line per group."),
    tagged("diag = tables.diagnostics_table(table) if table else None\n"
           "if diag is None or diag.empty:\n"
           "    print(\"no run of this sweep recorded diagnostics (diagnostics: true in its grid)\")\n"
           "else:\n"
           "    display(Markdown(tables.DIAGNOSTICS_CAPTION))\n"
           "    display(diag)", IGNORE),
    tagged("diag_curves = tables.diagnostics_curves(sweep_dir, table) if table else None\n"
           "if diag_curves is not None and diag_curves[\"measure\"].isin([\"cosine\", \"backbone_cosine\"]).any():\n"
           "    figures.alignment_over_epochs(diag_curves).show()", IGNORE),
    md("## Learning curves\nPer group, each task's training loss (its supervised term) and its validation metric per "
       "evaluated epoch (the test split where the runs have no validation split); thick = mean over seeds, thin = "
       "seeds. A validation curve that peaks and falls, or plateaus, while the training loss keeps falling is the "
       "over-fitting regime in which the papers' cross-task terms are meant to help."),
    tagged("curves = tables.learning_curves(sweep_dir, table) if table else None\n"
           "split = \"val\" if curves is not None and (curves[\"split\"] == \"val\").any() else \"test\"\n"
           "for task in table.tasks if table and not curves.empty else []:\n"
           "    figures.sweep_learning_curves(curves, task.name, task.primary_metric, split).show()", IGNORE),
    md("## Per evaluated source\nRuns with several training sources (`sources=`) evaluate each source's own test "
       "split (main = the config's `data_root`, the tables above); last epoch, mean ± std over seeds. Empty for a "
       "sweep of single-source runs."),
    tagged("by_source = tables.source_table(table) if table else None\n"
           "by_source if by_source is not None and not by_source.empty else print(\"no run evaluated another source\")",
           IGNORE),
    md("## Metric per group\nPrimary metric per group: bars = mean, error bars = std over seeds, circles = seeds."),
    tagged("for task in table.tasks if table else []:\n"
           "    tables.bar_chart(table, task.name).show()", IGNORE),
])

if __name__ == "__main__":
    import sys
    from pathlib import Path

    chosen = [a for a in sys.argv[1:] if not a.startswith("--")] or list(NOTEBOOKS)
    unknown = [c for c in chosen if c not in NOTEBOOKS]
    if unknown:
        sys.exit(f"make_analysis_notebooks.py: {unknown} not written here; allowed {list(NOTEBOOKS)}")
    for path in chosen:
        write_notebook(path, NOTEBOOKS[path])
        print("wrote", path)
    if "--execute" in sys.argv:      # store the outputs nbval checks (tools/store_notebook.py)
        from store_notebook import store

        for path in chosen:
            store(Path(path))
            print("executed", path)
