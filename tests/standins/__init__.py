"""Local HTTP stand-ins for services that cannot run here (Google's APIs, a Kubernetes API server).

Each speaks just enough of the real wire protocol for the official client libraries to talk to it,
and records what it received so tests can assert on request shape.
"""
