"""The user's own configuration (``$XDG_CONFIG_HOME/hpcflow``, default ``~/.config/hpcflow``):
trusted because only its owner can write it. Today it holds ``notify.yaml``, the targets that
run a command or read a secret, which a workflow or campaign may name but never give."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError

from hpcflow.errors import InvalidInput, Problem
from hpcflow.spec.notify import TARGET_NAME, NotifyTarget, UnknownTarget, resolve
from hpcflow.spec.workflow import Strict
from hpcflow.util.pydantic_errors import problems_from
from hpcflow.util.yamlsafe import Located, load_text, read_text_bounded

MAX_BYTES = 1024 * 1024


class UserNotify(Strict):
    targets: dict[str, NotifyTarget] = Field(
        default_factory=dict, description="name -> target; name them in notify: [NAME]"
    )


def config_dir() -> Path:
    xdg = os.environ.get("XDG_CONFIG_HOME") or os.path.expanduser("~/.config")
    return Path(xdg) / "hpcflow"


def notify_file() -> Path:
    return config_dir() / "notify.yaml"


def load_user_targets(path: Path | None = None) -> dict[str, NotifyTarget]:
    """The targets of the user's notify.yaml ({} when there is none). Refused unless it is
    a regular file you own that nobody else can write: what it says runs as you."""
    p = path or notify_file()
    try:
        st = os.stat(p)
    except FileNotFoundError:
        return {}
    except OSError as e:
        raise InvalidInput([Problem(str(p), 1, f"cannot read: {e.strerror}")]) from e
    if st.st_uid != os.getuid():
        raise InvalidInput([Problem(str(p), 1, f"owned by uid {st.st_uid}, not you; refused")])
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise InvalidInput([Problem(str(p), 1, f"writable by others; run `chmod 600 {p}`")])
    doc = load_text(read_text_bounded(p, MAX_BYTES, "notify.yaml"), str(p))
    try:
        cfg = UserNotify.model_validate(doc.data or {})
    except ValidationError as e:
        raise InvalidInput(problems_from(e, doc, UserNotify)) from e
    for k in cfg.targets:
        if not re.fullmatch(TARGET_NAME, k):
            why = f"target name {k!r}: use letters, digits, _ and - (a letter first)"
            raise InvalidInput([doc.problem(("targets", k), why)])
    return {k: v.model_copy(update={"name": k}) for k, v in cfg.targets.items()}


def notify_problems(
    entries: list[Any], site_targets: list[NotifyTarget], doc: Located
) -> list[Problem]:
    """A problem at its line for each name under ``notify:`` that no trusted file defines."""
    if not any(isinstance(e, str) for e in entries):
        return []  # the user's file is read only when a name needs it
    user = load_user_targets()
    problems = []
    for i, e in enumerate(entries):
        try:
            resolve([e], site_targets, user)
        except UnknownTarget as err:
            problems.append(doc.problem(("notify", i), str(err)))
    return problems
