# The evaluation job's image: a CUDA runtime, cajajejo with its evaluation runtime (HELM, MLflow,
# torch) installed by the same script CI runs, NLTK data baked in, tests run at build time.
# Build and push from a clean tree: invoke build-and-push-job-image evaluation
FROM nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    NLTK_DATA=/opt/nltk_data \
    HF_HOME=/scratch/.cache/huggingface

# Versions come from the pinned base image's Ubuntu release.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv python3-dev build-essential git ca-certificates \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY . /app

# The dev extra brings what the build-time tests need.
RUN PYTHON=python3 bash scripts/install.sh /opt/venv evaluation,dev \
    && python -m nltk.downloader -d /opt/nltk_data punkt_tab

# As the original image did: the image is only pushed when its tests pass.
RUN python jobs/evaluation/cli.py test -q -p no:cacheprovider

RUN useradd --create-home --uid 1000 evaluator && mkdir -p /scratch && chown evaluator /scratch
USER 1000
# `evaluate --local` writes its MLflow database and scratch under the working folder: a writable one.
WORKDIR /scratch

ENTRYPOINT ["python", "/app/jobs/evaluation/cli.py"]
CMD ["--help"]
