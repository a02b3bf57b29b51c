#!/usr/bin/env bash
# Make a virtual environment with the tested versions: torch from requirements/torch.txt, every other
# package from a lock with hashes (requirements/*.lock), this repository editable. Then
# `python -m linkbert.env check` confirms it matches.
#
#   bash scripts/install.sh                     # .venv with everything: what CI tests (all.lock)
#   bash scripts/install.sh --core              # fine-tuning and the demo only (core.lock)
#   bash scripts/install.sh --core report test  # the core and the extras named (report.lock, test.lock)
#   bash scripts/install.sh --venv PATH         # the venv in PATH (default .venv)
#
# Extras: distributed (fairscale), report (matplotlib), wandb, tensorboard, test (pytest), corpus
# (HTML/wikitext parsers), lint (ruff, mypy), bench (the benchmarks' MiniLM; not in all.lock).
# Every lock holds all.lock's versions.
#
# torch: plain `pip install torch==X` takes PyPI's CUDA build (its default CUDA). For another build,
# name the PyTorch index it comes from:
#   TORCH_INDEX_URL=https://download.pytorch.org/whl/cu126 bash scripts/install.sh   # CUDA 12.6
#   TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu   bash scripts/install.sh   # CPU only
# PYTHON=python3.12 picks the interpreter (3.10-3.12).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
locks=() venv=.venv
while [ $# -gt 0 ]; do
  case $1 in
    --core) locks+=(core) ;;
    --venv) venv=${2:?--venv needs a path}; shift ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    -*) echo "install.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    *) [ -f "$root/requirements/$1.lock" ] || {
         echo "install.sh: no extra named $1 (requirements/$1.lock); see --help" >&2; exit 2; }
       [ ${#locks[@]} -gt 0 ] || { echo "install.sh: name extras after --core (e.g. --core $1)" >&2; exit 2; }
       locks+=("$1") ;;
  esac
  shift
done
[ ${#locks[@]} -gt 0 ] || locks=(all)
python=${PYTHON:-python3}
if [ -e "$venv" ] && [ ! -x "$venv/bin/python" ]; then
  echo "install.sh: $venv exists and is not a virtual environment; give another path" >&2; exit 2
fi
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
pip=("$venv/bin/python" -m pip install --quiet --disable-pip-version-check)
torch_pin=$(grep -E '^torch==' "$root/requirements/torch.txt")
echo "install.sh: $torch_pin${TORCH_INDEX_URL:+ from $TORCH_INDEX_URL} into $venv"
"${pip[@]}" "$torch_pin" ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"}
# --no-deps: a lock lists every package but torch, which is installed above. One pip call per
# lock: the same pin in two files of one call is a "double requirement" to pip.
for lock in "${locks[@]}"; do
  echo "install.sh: requirements/$lock.lock (hash-checked)"
  "${pip[@]}" --require-hashes --no-deps -r "$root/requirements/$lock.lock"
done
# The project itself, built with the locked setuptools rather than whatever is newest.
"${pip[@]}" --no-deps --no-build-isolation -e "$root"
echo "${locks[*]}" > "$venv/linkbert-lock"
"$venv/bin/python" -m linkbert.env check
echo "install.sh: done. Use $venv/bin/python, or: source $venv/bin/activate"
