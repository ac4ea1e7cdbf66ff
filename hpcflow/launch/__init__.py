"""Launching work without the tracker: the run directory, and the expansion of a dynamic
foreach that the hpcflow-expand job or the login node runs (docs/dynamic.md)."""
