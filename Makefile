# Two commands: `make run` (set up, generate data, run the default experiment) and `make test`.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DATA := data/scenes-64x80
export PYTHONHASHSEED := 0
export MPLBACKEND := Agg

.PHONY: setup data run test test-fast lint unit nbval lab bench bench-gpu clean browser reports docs docs-check

setup: $(STAMP)

# torch is pinned here (and in environment.yml) to the tested CPU build; pyproject.toml asks only for
# torch>=2.6,<3, so on a GPU machine install your CUDA build of torch into .venv and drop the pin line.
$(STAMP): pyproject.toml
	@test -x $(PY) || { command -v $(PYTHON) >/dev/null 2>&1 || PYTHON=python3; $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV); }
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0          # pinned first: the CPU wheel on disk, never a CUDA download
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

data: $(STAMP)
	$(VENV)/bin/mtlwb generate --root $(DATA)

run: data
	$(VENV)/bin/mtlwb run-default

lint: $(STAMP)
	$(VENV)/bin/ruff check mtlwb tests benchmarks notebooks tools
	$(PY) -m compileall -q mtlwb tests benchmarks tools

unit: $(STAMP)
	$(PY) -m pytest -q -x --durations=10 tests

# the quick loop while developing: every test but those marked slow (papermill, subprocesses, browser, long
# end-to-end runs); `make test` still runs everything
test-fast: $(STAMP)
	$(PY) -m pytest -q -x --durations=10 -m "not slow" tests

nbval: data
	$(PY) -m pytest -q --nbval notebooks --nbval-sanitize-with notebooks/nbval_sanitize.cfg -p no:cacheprovider

test: lint data browser unit nbval docs-check

# Chromium from Debian for the browser test and PNG export (kaleido); never a downloaded browser.
browser:
	@test -x /usr/bin/chromium || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium; }

# the analysis notebooks executed with their defaults and exported to self-contained HTML under reports/
reports: data
	$(PY) tools/make_analysis_reports.py

# the documentation site (mkdocs.yml): built strictly and offline by `make test` (a broken link, a missing anchor
# or a page out of the navigation fails), served with live reload by `make docs`
docs-check: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir site

docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs serve

lab: $(STAMP)
	$(VENV)/bin/jupyter lab notebooks

bench: data
	$(PY) benchmarks/run_all.py

# GPU figures on a CUDA machine in one command, set-up included (its own interpreter choice and venv, not .venv):
# every method's step time, images/s and peak memory at 288x384 and 128x256, fp32/bf16/fp16, and a short training
# run, within 10 minutes; the markdown lands in reports/gpu/bench_gpu.md. Options: make bench-gpu ARGS="--tiny --device cpu"
bench-gpu:
	bash benchmarks/gpu.sh $(ARGS)

clean:
	rm -rf reports/runs reports/sweeps .pytest_cache site
