#!/usr/bin/env bash
# GPU figures in one command (`make bench-gpu`), on a machine that has never seen the project.
#
# 1. Picks a Python >= 3.11: $MTLWB_PYTHON if set, else the first candidate whose torch sees a CUDA device, else
#    (a GPU is there but no CUDA torch) any Python, into a fresh venv that gets torch from the package index,
#    else the first with torch (CPU; the benchmark then needs --device cpu).
# 2. Installs only what benchmarks/gpu_requirements.py reports missing (versions from pyproject.toml), into
#    reports/gpu/venv-* (git-ignored; or $MTLWB_GPU_VENV): a venv that sees the interpreter's packages, so an
#    existing CUDA torch is kept and only the missing packages are added.
#    No package index reachable: put the wheels in a folder and set MTLWB_WHEELS=<folder>.
# 3. Runs benchmarks/gpu_bench.py with what is left of the time budget (MTLWB_GPU_BUDGET, default 600 s, set-up
#    included). Arguments are passed on, e.g. `bash benchmarks/gpu.sh --tiny --device cpu` (a CPU smoke run).
set -euo pipefail

start=$(date +%s)
budget=${MTLWB_GPU_BUDGET:-600}
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
out=reports/gpu
mkdir -p "$out"

fail() { echo "gpu.sh: $*" >&2; exit 2; }
quiet() { "$@" >/dev/null 2>&1; }

py_ok()      { quiet "$1" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; }
has_torch()  { quiet "$1" -c 'import torch'; }
cuda_torch() { quiet "$1" -c 'import sys, torch; sys.exit(not torch.cuda.is_available())'; }
gpu_there()  { quiet command -v nvidia-smi && quiet nvidia-smi -L; }
find_missing() {   # fills the array `missing` with the requirements that $py cannot import
  local list
  list=$("$py" benchmarks/gpu_requirements.py) || fail "benchmarks/gpu_requirements.py failed with $py"
  missing=()
  if [ -n "$list" ]; then mapfile -t missing <<< "$list"; fi
}

mode=system    # system: a venv that sees the interpreter's packages; isolated: a fresh one (CPU torch kept out)
if [ -n "${MTLWB_PYTHON:-}" ]; then
  py_ok "$MTLWB_PYTHON" || fail "MTLWB_PYTHON=$MTLWB_PYTHON: not a Python >= 3.11"
  py=$MTLWB_PYTHON
else
  py="" any="" with_torch=""
  for c in .venv/bin/python python3.11 python3.12 python3.13 python3 python; do
    quiet command -v "$c" || continue
    py_ok "$c" || continue
    any=${any:-$c}
    has_torch "$c" || continue
    with_torch=${with_torch:-$c}
    if cuda_torch "$c"; then py=$c; break; fi
  done
  if [ -z "$py" ] && [ -n "$any" ] && gpu_there; then
    echo "gpu.sh: a GPU is there but no Python here has a CUDA build of torch: installing torch into a fresh venv"
    py=$any mode=isolated
  fi
  py=${py:-${with_torch:-$any}}
  [ -n "$py" ] || fail "no Python >= 3.11 found (tried python3.11, python3.12, python3.13, python3, python); set MTLWB_PYTHON"
fi

find_missing
if [ "$mode" = isolated ] || [ ${#missing[@]} -gt 0 ]; then
  venv=${MTLWB_GPU_VENV:-$out/venv-$mode}
  if [ ! -x "$venv/bin/python" ]; then
    if [ "$mode" = system ]; then
      # sees the interpreter's own packages through a .pth file (`--system-site-packages` would show the base
      # Python's instead when $py is itself a venv) and runs that interpreter's pip, so what is there (torch,
      # setuptools) satisfies the new packages' requirements and only the missing ones are installed
      quiet "$py" -m venv --without-pip "$venv" || fail "could not make a virtual environment with $py (no venv \
module?); install these into $py instead: ${missing[*]}"
      purelib=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
      "$py" -c 'import site; print("\n".join(f"import site; site.addsitedir({d!r})" for d in site.getsitepackages()))' \
        > "$purelib/mtlwb-base-packages.pth"
      quiet "$venv/bin/python" -m pip --version || quiet "$venv/bin/python" -m ensurepip \
        || fail "no pip for $venv (nor ensurepip); install these into $py instead: ${missing[*]}"
    else
      quiet "$py" -m venv "$venv" || fail "could not make a virtual environment with $py (no venv module?)"
    fi
  fi
  py=$venv/bin/python
  find_missing
  if [ ${#missing[@]} -gt 0 ]; then
    echo "gpu.sh: installing ${missing[*]} into $venv"
    source=()
    [ -n "${MTLWB_WHEELS:-}" ] && source=(--no-index --find-links "$MTLWB_WHEELS")
    "$py" -m pip install -q "${source[@]}" "${missing[@]}" \
      || fail "could not install ${missing[*]} (no package index reachable? put their wheels, with their \
dependencies, in a folder and set MTLWB_WHEELS=<folder>)"
    find_missing
    [ ${#missing[@]} -eq 0 ] || fail "still missing after the install: ${missing[*]}"
  fi
fi

left=$(( budget - ($(date +%s) - start) - 15 ))
[ "$left" -ge 60 ] || fail "the set-up took $(( $(date +%s) - start )) s of the ${budget} s budget (MTLWB_GPU_BUDGET): \
no time left to measure"
echo "gpu.sh: $("$py" -c 'import sys, torch; print(sys.executable, "torch", torch.__version__, "CUDA", torch.version.cuda)'); \
set-up $(( $(date +%s) - start )) s, ${left} s left for the rows"
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
exec "$py" benchmarks/gpu_bench.py --budget "$left" "$@"
