"""Turning a validated config into a plan: plain Kubernetes manifests as data, checked before use."""
