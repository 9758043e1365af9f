#!/usr/bin/env bash
# The main job on embedded defaults: install into a venv, then execute the example notebooks end to end
# against a local MLflow store (./mlflow.db, ./mlruns) and the local Docker engine: register a model,
# build its image, run it, and compare the container's predictions with the notebook's.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/system-deps.sh
trap 'bash scripts/stop-services.sh' EXIT
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q -e ".[all]"

mkdir -p demo
for nb in example_notebooks/01_register_a_model.ipynb example_notebooks/02_build_and_test.ipynb; do
  echo "== running $nb"
  cp "$nb" demo/
  .venv/bin/jupyter nbconvert --to notebook --execute --inplace --ExecutePreprocessor.timeout=1200 \
    --log-level=WARN "demo/$(basename "$nb")"
  echo "   executed: demo/$(basename "$nb")"
done
.venv/bin/python -c "import os; os.chdir('demo'); from pyml_jupyter.displays import ModelTable; import pyml_jupyter as p; print(ModelTable(p.list_models()))"
echo "MLflow store: $(pwd)/demo/mlflow.db (open it with: cd demo && ../.venv/bin/mlflow ui)"
