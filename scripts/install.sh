#!/usr/bin/env bash
# Install cajajejo with its evaluation runtime (HELM, MLflow, torch) into a virtual environment.
# Used by .ci/run, by evaluation.Dockerfile and by the README's quickstart command, so the three
# cannot drift apart. Usage: scripts/install.sh [VENV_DIR] [EXTRAS]   (defaults: .venv evaluation)
set -euo pipefail

venv=${1:-.venv}
extras=${2:-evaluation}
root=$(cd "$(dirname "$0")/.." && pwd)

if [ ! -x "$venv/bin/python" ]; then
  "${PYTHON:-python3}" -m venv "$venv"
fi
py="$venv/bin/python"
pip_install() { "$py" -m pip install --quiet --disable-pip-version-check "$@"; }

pip_install --upgrade pip
# torch first, at the pinned version: any other torch requirement (HELM's included) would pull
# several GB of CUDA wheels on a machine that has a local CPU wheel of this version.
pip_install "torch==${TORCH_VERSION:-2.13.0}"
pip_install -c "$root/constraints.txt" -e "$root[$extras]"

# HELM pulls a torchvision built for another torch; importing it then breaks transformers
# ("operator torchvision::nms does not exist"). HELM needs it only for vision scenarios.
if "$py" -c "import torchvision" >/dev/null 2>&1; then
  :
elif "$py" -m pip show torchvision >/dev/null 2>&1; then
  echo "install: removing a torchvision that does not match torch (only vision scenarios need it)"
  "$py" -m pip uninstall --quiet -y torchvision
fi

# HELM's text metrics need NLTK's punkt_tab: use the real one when it can be downloaded, else a minimal one.
"$py" -m cajajejo.evaluation.helm_setup
echo "install: done ($("$py" -c 'import torch, helm, mlflow; print("torch", torch.__version__, "mlflow", mlflow.__version__)'))"
