"""Slurm commands: argv builders, parsers and the client that runs them."""
