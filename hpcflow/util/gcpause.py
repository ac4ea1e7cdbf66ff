"""Pause Python's cyclic garbage collector around bulk work."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def gc_paused() -> Iterator[None]:
    """A refresh makes a few acyclic objects per element (rows, tuples, dicts); at 100,000
    elements the collector, triggered by every 700 allocations, walks the growing heap again
    and again: a third of a 52,000-element refresh (docs/benchmarks.md). Reference counting
    frees all of them; the collector runs again when the block ends."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()
