#!/usr/bin/env bash
# The two commands of the README, set-up included:
#   ./run.sh train [fedmodel train options]   a federated run on scikit-learn's digits
#   ./run.sh test  [pytest options]           every test (the command CI runs)
# Both create .venv and install fedmodel with every backend when it is missing or out of date.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
stamp=.venv/.fedmodel-installed
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e ".[all,dev]"
  touch "$stamp"
fi
cmd=${1:-help}
shift || true
case "$cmd" in
  train) exec .venv/bin/fedmodel train "$@" ;;
  # two test processes, one test file each at a time (a file's fixtures, Ray cluster and Flower processes stay in
  # one process); a later -n in the arguments wins (-n 0: one process)
  test) exec .venv/bin/python -m pytest -n 2 --dist loadfile "$@" ;;
  *) echo "usage: ./run.sh train [options] | ./run.sh test [pytest options]" >&2; exit 2 ;;
esac
