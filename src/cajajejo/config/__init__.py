"""Job configs: typed models, and a loader that reports problems with file, field and line."""
