"""cajajejo: one validated job description becomes plain scheduler manifests, reproducibly."""

__version__ = "0.1.0"
