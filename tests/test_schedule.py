"""The crontab line `campaign schedule` writes (into a crontab file, no cron or Slurm needed),
and the bounded log cron's ticks write."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hpcflow.campaign.schedule import cron_env, cron_line
from hpcflow.errors import HpcflowError
from hpcflow.util.logfile import rotate

from .helpers import campaign_file, lab_site


def test_cron_line_carries_its_environment_quoted() -> None:
    env = cron_env({"SLURM_CONF": "/etc/my slurm/slurm.conf", "HOME": "/h"}, ["/opt/slurm/bin"])
    assert env == {
        "PATH": "/opt/slurm/bin:/usr/local/bin:/usr/bin:/bin",
        "SLURM_CONF": "/etc/my slurm/slurm.conf",
    }
    line = cron_line("*/5 * * * *", ["/v/bin/hpcflow", "tick", "50%.yaml"], env, "c")
    assert line == (
        "*/5 * * * * PATH=/opt/slurm/bin:/usr/local/bin:/usr/bin:/bin "
        "SLURM_CONF='/etc/my slurm/slurm.conf' /v/bin/hpcflow tick 50\\%.yaml # hpcflow-campaign:c"
    )
    with pytest.raises(HpcflowError, match="not an environment variable"):
        cron_line("* * * * *", ["x"], {"A;B": "1"}, "c")


def test_cron_line_runs_under_sh_with_only_its_own_environment(tmp_path: Path) -> None:
    """The command part of the line, run as cron runs it (sh -c, nearly empty environment)."""
    tool = tmp_path / "bin"
    tool.mkdir()
    (tool / "sbatch").write_text("#!/bin/sh\necho sbatch-found\n")
    (tool / "sbatch").chmod(0o755)
    line = cron_line("* * * * *", ["sh", "-c", "sbatch; echo $SLURM_CONF"],
                     cron_env({"SLURM_CONF": "/x y"}, [str(tool)]), "c")  # fmt: skip
    command = line.split(" ", 5)[5].rsplit(" # ", 1)[0]
    out = subprocess.run(
        ["/bin/sh", "-c", command], env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert out.stdout == "sbatch-found\n/x y\n"


def test_rotate_keeps_the_log_bounded(tmp_path: Path) -> None:
    log = tmp_path / "tick.log"
    assert rotate(str(log), 100, 3) is False  # nothing yet
    for i in range(10):
        with log.open("a") as f:
            f.write(f"{i}" * 150)
        rotate(str(log), 100, 3)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["tick.log.1", "tick.log.2", "tick.log.3"]
    assert (tmp_path / "tick.log.1").read_text() == "9" * 150  # newest first
    assert (tmp_path / "tick.log.3").read_text() == "7" * 150
    total = sum(os.path.getsize(p) for p in tmp_path.iterdir())
    assert total <= 4 * 150


def test_tick_log_is_private_and_stamped(tmp_path: Path) -> None:
    log = tmp_path / "t.log"
    code = (
        "import sys; from hpcflow.util.logfile import redirect_to_bounded_log as r; "
        f"r({str(log)!r}, 'tick x'); print('out'); print('err', file=sys.stderr)"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=tmp_path)
    lines = log.read_text().splitlines()
    assert lines[0].startswith("== ") and lines[0].endswith("Z tick x")
    assert lines[1:] == ["out", "err"]
    assert log.stat().st_mode & 0o777 == 0o600


def test_schedule_installs_one_crontab_line(hpcflow, tmp_path: Path) -> None:
    site = lab_site(tmp_path / "site.yaml", tmp_path / "scratch")
    camp = campaign_file(tmp_path, site)
    tab = tmp_path / "crontab"
    tab.write_text("MAILTO=''\n0 3 * * * /usr/bin/backup\n")
    env = {"HPCFLOW_CRONTAB_FILE": str(tab)}
    p = hpcflow("campaign", "schedule", str(camp), "--cron", "*/15 * * * *", extra_env=env)
    assert p.returncode == 0, p.stderr
    lines = tab.read_text().splitlines()
    assert lines[:2] == ["MAILTO=''", "0 3 * * * /usr/bin/backup"]
    db = tmp_path / "db" / "tracker.db"
    found = [str(Path(s).parent) for s in [shutil.which("sbatch")] if s]  # none: no Slurm here
    path = ":".join(dict.fromkeys([*found, "/usr/local/bin", "/usr/bin", "/bin"]))
    assert lines[2] == (
        f"*/15 * * * * PATH={path} {Path(sys.executable).parent / 'hpcflow'} --db {db} campaign "
        f"tick {camp} --log {db.parent}/logs/campaign-demo-storms.log "
        "# hpcflow-campaign:demo-storms"
    )
    again = hpcflow("campaign", "schedule", str(camp), "--cron", "0 * * * *", extra_env=env)
    assert again.returncode == 1 and "already has an entry" in again.stderr
    show = hpcflow("campaign", "schedule", str(camp), "--show", extra_env=env)
    assert show.stdout.strip() == lines[2]
    bad = hpcflow("campaign", "unschedule", str(camp), extra_env=env)
    assert bad.returncode == 0 and "# hpcflow-campaign" not in tab.read_text()
    assert tab.read_text().splitlines() == lines[:2]
    evil = hpcflow(
        "campaign", "schedule", str(camp), "--cron", "* * * * * ; rm -rf ~", extra_env=env
    )
    assert evil.returncode != 0 and "not a crontab schedule" in evil.stderr
