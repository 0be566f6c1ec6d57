"""The evaluation job's runtime: what the container (or a laptop, with --local) runs.

fetch the model → register it with HELM → helm-run and helm-summarize → results, tags and artifacts
to MLflow. Heavy libraries (mlflow, torch, HELM, google-cloud-storage) are imported inside functions.
"""
