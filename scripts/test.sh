#!/usr/bin/env bash
# Set up a fresh Debian/Ubuntu machine and run the whole test suite: Python tests (real MLflow store and
# server, Docker engine, Spark session, JupyterLab in headless Chromium) and the front-end unit tests.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -k schema`.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/system-deps.sh
trap 'bash scripts/stop-services.sh' EXIT

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# PyTorch first, pinned: on these machines it is a CPU build, and the package install below then finds it
# satisfied instead of pulling a CUDA build. The TensorModel and torch artifact tests need it (CI=true fails them
# without it).
.venv/bin/python -m pip install -q "torch==2.13.0"
# Installs the package with every extra; the build hook compiles the JupyterLab extension with npm.
.venv/bin/python -m pip install -q -e ".[all]"
# KServe's generated API models, against which the tests check the exported InferenceService
# (tests/kserve_schema.py). Installed without dependencies into a directory of their own, not the venv: the kserve
# package pins protobuf, psutil and grpcio-tools below this project's, and its models need only six, urllib3 and
# kubernetes, which the venv has.
KSERVE_MODELS=.test-deps/kserve-0.21.0
[ -d "$KSERVE_MODELS/kserve-0.21.0.dist-info" ] ||
  .venv/bin/python -m pip install -q --no-deps --target "$KSERVE_MODELS" "kserve==0.21.0"
# JupyterLab runs its builder by name: the venv must be on PATH.
PATH="$PWD/.venv/bin:$PATH" .venv/bin/jupyter labextension develop --overwrite . >/dev/null

(cd labextension && npm ci --no-audit --no-fund --loglevel=error && npm test --silent)

status=0
.venv/bin/python -m pytest "$@" || status=$?
exit $status
