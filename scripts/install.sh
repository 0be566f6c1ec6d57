#!/usr/bin/env bash
# Install cajajejo with its evaluation runtime (HELM, MLflow, torch) into a virtual environment.
# Used by .ci/run, by evaluation.Dockerfile and by the README's quickstart command, so the three
# cannot drift apart. Usage: scripts/install.sh [VENV_DIR] [EXTRAS]   (defaults: .venv evaluation)
set -euo pipefail

venv=${1:-.venv}
extras=${2:-evaluation}
root=$(cd "$(dirname "$0")/.." && pwd)
started=$SECONDS
step() { echo "install: [$1/5] $2 ($((SECONDS - started)) s so far)"; }

step 1 "virtual environment $venv"
if [ ! -x "$venv/bin/python" ]; then
  "${PYTHON:-python3}" -m venv "$venv"
fi
py="$venv/bin/python"
pip_install() { "$py" -m pip install --quiet --disable-pip-version-check "$@"; }

pip_install --upgrade pip
step 2 "torch ${TORCH_VERSION:-2.13.0} (CPU wheel where one exists)"
# torch first, at the pinned version: any other torch requirement (HELM's included) would pull
# several GB of CUDA wheels on a machine that has a local CPU wheel of this version.
pip_install "torch==${TORCH_VERSION:-2.13.0}"
step 3 "cajajejo[$extras] with its pinned dependencies (HELM, MLflow: the longest step, 1-3 min)"
pip_install -c "$root/constraints.txt" -e "$root[$extras]"

step 4 "checking torchvision against torch"
# HELM pulls a torchvision built for another torch; importing it then breaks transformers
# ("operator torchvision::nms does not exist"). HELM needs it only for vision scenarios.
if "$py" -c "import torchvision" >/dev/null 2>&1; then
  :
elif "$py" -m pip show torchvision >/dev/null 2>&1; then
  echo "install: removing a torchvision that does not match torch (only vision scenarios need it)"
  "$py" -m pip uninstall --quiet -y torchvision
fi

step 5 "NLTK punkt_tab for HELM's text metrics"
# HELM's text metrics need NLTK's punkt_tab: use the real one when it can be downloaded, else a minimal one.
"$py" -m cajajejo.evaluation.helm_setup
echo "install: done in $((SECONDS - started)) s ($("$py" -c 'import torch, helm, mlflow; print("torch", torch.__version__, "mlflow", mlflow.__version__)'))"
