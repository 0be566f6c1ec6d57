"""Workflows: several Slurm jobs that make one piece of work (segmented training with evaluations beside
it), planned as data, submitted at once with Slurm dependencies, and followed through the files the jobs
leave in the workflow's folder."""
