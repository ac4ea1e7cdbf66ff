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

MARK = "# hpcflow-campaign:"
_FIELD = re.compile(r"^[0-9A-Za-z*/,-]+$")
_MACROS = {"@hourly", "@daily", "@weekly", "@monthly", "@yearly", "@annually", "@midnight"}


def check_cron(expr: str) -> str:
    """Five crontab fields (or an @macro); nothing that could add a command or a line."""
    fields = expr.split()
    ok = (len(fields) == 1 and fields[0] in _MACROS) or (
        len(fields) == 5 and all(_FIELD.match(f) for f in fields)
    )
    if not ok:
        raise HpcflowError(
            f"--cron {expr!r} is not a crontab schedule: give five fields such as "
            "'*/15 * * * *' (minute hour day month weekday) or @hourly"
        )
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
    assigns = [f"{k}={_cron_word(v)}" for k, v in env.items()]
    cmd = " ".join([*assigns, *(_cron_word(a) for a in argv)])
    return f"{check_cron(expr)} {cmd} {MARK}{name}"


def entries(text: str, name: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.rstrip().endswith(f"{MARK}{name}")]


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
    kept = [ln for ln in text.splitlines() if ln not in entries(text, name)]
    return "\n".join(kept) + ("\n" if kept else "")


def read_crontab(runner: Runner) -> str:
    path = os.environ.get("HPCFLOW_CRONTAB_FILE")
    if path:
        return open(path, encoding="utf-8").read() if os.path.exists(path) else ""
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
