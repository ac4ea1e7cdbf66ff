"""`hpcflow campaign schedule`: the user's crontab line that runs `campaign tick`.

Pure functions build and edit the crontab text; reading and writing it goes through the Runner
(`crontab -l` / `crontab -`) on the machine where hpcflow runs. HPCFLOW_CRONTAB_FILE names a
plain file to use instead of the user's crontab (for tests, or to review a line first).
"""

from __future__ import annotations

import os
import re
import shlex

from hpcflow.errors import HpcflowError
from hpcflow.runners.base import Runner
from hpcflow.util.safeio import read_bounded

MARK = "# hpcflow-campaign:"
_FIELD = re.compile(r"^[0-9A-Za-z*/,-]+$")
_MACROS = {"@hourly", "@daily", "@weekly", "@monthly", "@yearly", "@annually", "@midnight"}
_CONTROL = re.compile(r"[\x00-\x1f\x7f\x85\u2028\u2029]")
_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
# field: (name, lowest, highest, names for 0.. or 1..)
_FIELDS = [
    ("minute", 0, 59, None), ("hour", 0, 23, None), ("day of month", 1, 31, None),
    ("month", 1, 12, _MONTHS), ("day of week", 0, 7, _DAYS),
]  # fmt: skip


def _value(text: str, lo: int, hi: int, names: tuple[str, ...] | None, what: str) -> int:
    if names and text.lower() in names:
        return names.index(text.lower()) + (lo if lo == 1 else 0)
    if not text.isdigit():
        raise ValueError(f"{what} {text!r} is not a number")
    v = int(text)
    if not lo <= v <= hi:
        raise ValueError(f"{what} {v} is out of range {lo}-{hi}")
    return v


def _check_field(field: str, lo: int, hi: int, names: tuple[str, ...] | None, what: str) -> None:
    """One crontab field as cron(8) reads it: lists of *, N, N-M, each with an optional /S."""
    for part in field.split(","):
        span, _, step = part.partition("/")
        if _ and (not step.isdigit() or int(step) == 0 or int(step) > hi):
            raise ValueError(f"{what} step {step!r} must be 1-{hi}")
        if span == "*":
            continue
        a, dash, b = span.partition("-")
        first = _value(a, lo, hi, names, what)
        if dash and first > _value(b, lo, hi, names, what):
            raise ValueError(f"{what} range {span!r} runs backwards")
        if _ and not dash:
            raise ValueError(f"{what} {part!r}: a step needs * or a range before it")


def check_cron(expr: str) -> str:
    """Five crontab fields in range (or an @macro); nothing that could add a command or a
    line: a newline or any control character is refused, and each field is named."""
    if _CONTROL.search(expr):
        raise HpcflowError(f"--cron {expr!r}: a control character (newline?) is not allowed")
    fields = expr.split()
    ok = (len(fields) == 1 and fields[0] in _MACROS) or (
        len(fields) == 5 and all(_FIELD.match(f) for f in fields)
    )
    if not ok:
        raise HpcflowError(
            f"--cron {expr!r} is not a crontab schedule: give five fields such as "
            "'*/15 * * * *' (minute hour day month weekday) or @hourly"
        )
    if len(fields) == 5:
        for f, (what, lo, hi, names) in zip(fields, _FIELDS):
            try:
                _check_field(f, lo, hi, names, what)
            except ValueError as e:
                raise HpcflowError(f"--cron {expr!r}: {e}") from e
    return " ".join(fields)


def _cron_word(word: str) -> str:
    # cron turns an unescaped % into a newline
    return shlex.quote(word).replace("%", "\\%")


_ENV_NAME = re.compile(r"^[A-Z_][A-Z0-9_]*$")
# what cron's minimal environment lacks and a tick may need, carried from `schedule`'s own
CARRIED = ("SLURM_CONF", "XDG_CONFIG_HOME")


def cron_path(environ: dict[str, str], tool_dirs: list[str]) -> str:
    """PATH for the cron line: where the Slurm tools were found, then the system's."""
    out: list[str] = []
    for d in [*tool_dirs, "/usr/local/bin", "/usr/bin", "/bin"]:
        if d and d not in out and ":" not in d:
            out.append(d)
    return ":".join(out)


def cron_env(environ: dict[str, str], tool_dirs: list[str]) -> dict[str, str]:
    """The environment the cron line sets: cron gives a command only HOME, LOGNAME, SHELL
    and PATH=/usr/bin:/bin (docs/campaigns.md)."""
    env = {"PATH": cron_path(environ, tool_dirs)}
    env.update({k: environ[k] for k in CARRIED if environ.get(k)})
    return env


def cron_line(expr: str, argv: list[str], env: dict[str, str], name: str) -> str:
    """One crontab line: ``K=V ... argv`` run by cron's /bin/sh. The tick writes its own
    bounded log (``--log``), so nothing is redirected here: what cannot reach the log (hpcflow
    missing) goes to cron's mail, as for any cron job."""
    for k in env:
        if not _ENV_NAME.match(k):
            raise HpcflowError(f"{k!r} is not an environment variable name")
    for what, word in [*((f"${k}", v) for k, v in env.items()), *(("a path", a) for a in argv),
                       ("the campaign name", name)]:  # fmt: skip
        if _CONTROL.search(word):  # shlex.quote keeps a newline: cron would read two lines
            raise HpcflowError(
                f"{what} {word!r} holds a newline or another control character: a crontab "
                "line cannot carry it; rename or move it"
            )
    assigns = [f"{k}={_cron_word(v)}" for k, v in env.items()]
    cmd = " ".join([*assigns, *(_cron_word(a) for a in argv)])
    return f"{check_cron(expr)} {cmd} {MARK}{name}"


def _lines(text: str) -> list[str]:
    """The crontab's lines as cron reads them: split at \\n only (splitlines would also split
    someone's line at U+2028 and write it back as two)."""
    lines = text.split("\n")
    return lines[:-1] if lines and lines[-1] == "" else lines


def entries(text: str, name: str) -> list[str]:
    return [ln for ln in _lines(text) if ln.rstrip().endswith(f"{MARK}{name}")]


def add_entry(text: str, line: str, name: str) -> str:
    if entries(text, name):
        raise HpcflowError(
            f"the crontab already has an entry for campaign {name!r}:\n  "
            + "\n  ".join(entries(text, name))
            + "\nremove it first (`hpcflow campaign schedule FILE --remove`)"
        )
    body = text if not text or text.endswith("\n") else text + "\n"
    return body + line + "\n"


def remove_entry(text: str, name: str) -> str:
    ours = entries(text, name)
    kept = [ln for ln in _lines(text) if ln not in ours]
    return "\n".join(kept) + ("\n" if kept else "")


def read_crontab(runner: Runner) -> str:
    path = os.environ.get("HPCFLOW_CRONTAB_FILE")
    if path:
        if not os.path.exists(path):
            return ""
        return read_bounded(path, 1024 * 1024).decode("utf-8", errors="replace")
    res = runner.run(["crontab", "-l"], timeout=30)
    if res.ok:
        return res.stdout
    if "no crontab" in (res.stderr + res.stdout).lower():
        return ""
    raise HpcflowError(f"crontab -l failed: {(res.stderr or res.stdout).strip()}")


def write_crontab(runner: Runner, text: str) -> None:
    path = os.environ.get("HPCFLOW_CRONTAB_FILE")
    if path:
        runner.write_file(path, text, 0o600)
        return
    res = runner.run(["crontab", "-"], input=text, timeout=30)
    if not res.ok:
        raise HpcflowError(f"crontab - failed: {(res.stderr or res.stdout).strip()}")
