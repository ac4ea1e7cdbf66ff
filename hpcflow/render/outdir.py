"""`render -o DIR`: a directory of this render's files only (docs/cli.md#render).

A render writes the list of what it wrote (MANIFEST). Rendering again into the same directory
first removes what the earlier render listed, so no script of a step that is gone, and no
tasks file of a chunk that no longer exists, is left beside the new ones to be mistaken for
them; files you added are kept. A directory that holds other files and no manifest is
refused: it is not hpcflow's to clear."""

from __future__ import annotations

import contextlib
import json
import os
import stat
from pathlib import Path, PurePosixPath

from hpcflow.errors import BadUsage
from hpcflow.util.safeio import UnsafeFile, read_bounded

MANIFEST = ".hpcflow-render.json"
MAX_MANIFEST = 64 * 1024 * 1024


def _listed(out: Path) -> list[str]:
    try:
        doc = json.loads(read_bounded(out / MANIFEST, MAX_MANIFEST))
    except (OSError, UnsafeFile, ValueError) as e:
        raise BadUsage(
            f"{out / MANIFEST}: not a render's list of files ({e}); remove it, or render "
            "into a new directory"
        ) from None
    files = doc.get("files") if isinstance(doc, dict) else None
    if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
        raise BadUsage(f"{out / MANIFEST}: not a render's list of files; render elsewhere")
    return files


def _safe(rel: str) -> bool:
    p = PurePosixPath(rel)
    return bool(rel) and not p.is_absolute() and ".." not in p.parts and "\0" not in rel


def clear_earlier(out: Path) -> int:
    """Make ``out`` ready for a render: remove the files an earlier render listed (regular
    files only, inside ``out``) and the directories that leaves empty. Returns how many
    files were removed. BadUsage when ``out`` holds files no render wrote."""
    if not out.exists():
        return 0
    if not out.is_dir():
        raise BadUsage(f"{out} is not a directory; give a new or empty directory for -o")
    if not (out / MANIFEST).exists():
        if any(out.iterdir()):
            raise BadUsage(
                f"{out} is not empty and no earlier render wrote it (no {MANIFEST}); give "
                "a new or empty directory, so nothing of yours is mixed with the scripts"
            )
        return 0
    removed, dirs = 0, set[Path]()
    for rel in _listed(out):
        if not _safe(rel):
            continue  # never outside the directory, whatever the list says
        path = out / rel
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            continue
        if stat.S_ISREG(st.st_mode):
            os.unlink(path)
            removed += 1
            dirs.update(p for p in Path(rel).parents if str(p) != ".")
    for d in sorted(dirs, key=lambda p: len(p.parts), reverse=True):
        with contextlib.suppress(OSError):  # only when empty: yours keep their directories
            (out / d).rmdir()
    return removed


def manifest_text(files: list[str]) -> str:
    return json.dumps({"files": sorted(files)}, indent=0) + "\n"
