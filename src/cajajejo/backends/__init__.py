"""Where plans go: Kubernetes now; Slurm and local processes later, behind the same few calls."""
