"""Runs on compute nodes: stdlib only, imports nothing of hpcflow."""
