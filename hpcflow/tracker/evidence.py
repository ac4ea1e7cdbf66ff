"""An element's own files, read once when it ends: result.json, the skip marker, outputs.json.
The refresh decides with them (``reconcile.with_evidence``) and stores what they said."""

from __future__ import annotations

import json
import logging
from typing import Any

from hpcflow.node.jobtool import task_dir
from hpcflow.runners.base import Runner
from hpcflow.tracker.reconcile import Change, wants_outputs, with_evidence

log = logging.getLogger(__name__)


def read_evidence(runner: Runner, run_dirs: dict[str, str], changes: list[Change]) -> list[Change]:
    """Elements that just ended: their own files are read once, on the transition, in one
    batch (one command over SSH): result.json, the skip marker where the element may skip
    or is packed, then outputs.json of those whose record says they wrote one."""
    dirs = {
        i: task_dir(run_dirs[c.task.run_id], c.task.step, c.task.index)
        for i, c in enumerate(changes)
        if c.needs_evidence
    }
    if not dirs:
        return changes
    marked = {i for i in dirs if changes[i].check_skip or changes[i].task.reads_result}
    first = [f"{d}/{RESULT}" for d in dirs.values()] + [f"{dirs[i]}/{MARKER}" for i in marked]
    files = runner.read_files(first)
    results = {i: _json(files[f"{d}/{RESULT}"]) for i, d in dirs.items()}
    more = [f"{d}/{OUTPUTS}" for i, d in dirs.items() if wants_outputs(changes[i], results[i])]
    if more:
        files.update(runner.read_files(more))
    log.debug("refresh: read %d files of %d finished elements", len(first) + len(more), len(dirs))
    out = list(changes)
    for i, d in dirs.items():
        marker = files.get(f"{d}/{MARKER}")
        outputs = files.get(f"{d}/{OUTPUTS}")
        out[i] = with_evidence(changes[i], results[i], _text(marker), _json(outputs))
    return out


RESULT, MARKER, OUTPUTS = ".hpcflow/result.json", ".hpcflow/skipped", "outputs.json"
MAX_STORED = 65536  # bytes of one element's outputs.json kept in the tracker


def _json(raw: bytes | None) -> Any:
    if raw is None or len(raw) > MAX_STORED:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return None


def _text(raw: bytes | None) -> str | None:
    return None if raw is None else raw.decode(errors="replace")
