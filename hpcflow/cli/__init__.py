"""The click command line: `main` is the `hpcflow` entry point."""

from hpcflow.cli.main import main

__all__ = ["main"]
