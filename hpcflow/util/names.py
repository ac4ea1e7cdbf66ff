"""What may reach a script or an ``#SBATCH`` line by name or as one word (docs/security.md).

sbatch splits an ``#SBATCH`` line into words and reads every word that starts with ``-`` as
an option, so a value with white space or a leading ``-`` could smuggle options in
(``constraint: "x --wrap=..."``). Such values are refused, not quoted: sbatch's own quoting
rules differ between Slurm releases.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable

IDENT = r"^[A-Za-z_][A-Za-z0-9_]{0,62}$"
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
_WORD_BAD = re.compile(r"[\s'\"\\`$#;&|<>]|[\x00-\x1f\x7f]")
_CONSTRAINT_BAD = re.compile(r"[\s'\"\\`$#;<>]|[\x00-\x1f\x7f]")  # & | [ ] ( ) * ! allowed


def is_ident(name: object) -> bool:
    """An identifier, checked on the whole string (``re.match`` with ``$`` would let a
    trailing newline through)."""
    return isinstance(name, str) and _IDENT.fullmatch(name) is not None


def check_env_name(name: object) -> str:
    if not is_ident(name):
        raise ValueError(
            f"environment variable name {name!r} is not an identifier ([A-Za-z_][A-Za-z0-9_]*)"
        )
    assert isinstance(name, str)
    if name.startswith("HPCFLOW_"):
        raise ValueError(f"{name!r}: names starting with HPCFLOW_ are reserved")
    return name


def sbatch_word(value: str, what: str, constraint: bool = False) -> str:
    """``value`` as one word sbatch cannot read as more options, or ValueError."""
    text = str(value)
    bad = (_CONSTRAINT_BAD if constraint else _WORD_BAD).search(text)
    if not text or text.startswith("-") or bad:
        shown = f" ({bad.group()!r})" if bad else ""
        raise ValueError(
            f"{what} {text!r} must be one word without white space, quotes or shell "
            f"characters{shown}, and must not start with '-'"
        )
    return text


# Flags hpcflow writes itself (or that would undo what it writes), long name -> short letter.
MANAGED = {
    "array": "a",
    "dependency": "d",
    "job-name": "J",
    "output": "o",
    "error": "e",
    "chdir": "D",
    "parsable": "",
    "wrap": "",
    "kill-on-invalid-dep": "",
    "time": "t",
    "mem": "",
    "mem-per-cpu": "",
    "mem-per-gpu": "",
    "cpus-per-task": "c",
    "ntasks": "n",
    "nodes": "N",
    "gres": "",
    "gpus": "G",
    "partition": "p",
    "account": "A",
    "qos": "q",
    "constraint": "C",
}
_SHORT = {v: k for k, v in MANAGED.items() if v}


def check_sbatch_extra(entry: str) -> str:
    """One ``--flag[=value]`` (or ``-X[value]``) line for ``#SBATCH``. Refused: flags
    hpcflow manages, in any form sbatch's getopt accepts (short letters, unambiguous
    prefixes such as ``--arr=`` or ``--depend``), bundles of short flags, and values that are
    more than one word."""
    text = entry.strip()
    if any(c in text for c in "\n\r\0"):
        raise ValueError(f"sbatch_extra entry {entry!r} contains a control character")
    if text.startswith("--"):
        name, sep, value = text[2:].partition("=")
        if not sep:
            name, _, value = name.partition(" ")
        if not re.fullmatch(r"[a-z][a-z0-9-]*", name):
            raise ValueError(f"sbatch_extra entry {entry!r}: {name!r} is not an sbatch flag")
        hit = [m for m in MANAGED if m.startswith(name)]
        if hit:
            raise ValueError(
                f"sbatch_extra entry {entry!r}: --{name} is (or abbreviates) --{hit[0]}, "
                "which hpcflow manages; use the workflow's resources or the site's keys"
            )
    elif text.startswith("-") and len(text) >= 2 and text[1].isalpha():
        letter, value = text[1], text[2:].lstrip("= ")
        if letter in _SHORT:
            raise ValueError(
                f"sbatch_extra entry {entry!r}: -{letter} is --{_SHORT[letter]}, "
                "which hpcflow manages"
            )
        if len(text) > 2 and text[2] not in "= ":
            raise ValueError(
                f"sbatch_extra entry {entry!r}: write one short flag per entry "
                "(-X value), or the long form"
            )
    else:
        raise ValueError(f"sbatch_extra entry {entry!r} is not a flag (start it with --)")
    if value:
        sbatch_word(value, f"sbatch_extra entry {entry!r}: value")
    return entry


def did_you_mean(word: str, known: Iterable[object]) -> str:
    """The hint ' (did you mean X?)' for the closest of ``known``, or an empty string."""
    hint = difflib.get_close_matches(str(word), [str(k) for k in known], n=1)
    return f" (did you mean {hint[0]!r}?)" if hint else ""
