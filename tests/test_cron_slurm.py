"""A campaign driven by the real cron daemon (Debian's `cron`, started by the lab): `campaign
schedule` installs the line in the user's real crontab, cron ticks it every minute with its own
minimal environment until the campaign is finished, and `campaign unschedule` takes it out."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from .helpers import lab_site
from .test_campaign_slurm import _campaign

pytestmark = pytest.mark.slurm

MARK = "# hpcflow-campaign:demo-storms"


def _crontab() -> str:
    p = subprocess.run(["crontab", "-l"], capture_output=True, text=True)
    return p.stdout if p.returncode == 0 else ""


@pytest.fixture
def real_crontab():
    """The user's crontab as it was, put back afterwards (the test edits the real one)."""
    if subprocess.run(["pgrep", "-x", "cron"], capture_output=True).returncode != 0:
        pytest.fail("the cron daemon is not running: `tests/cluster/slurm-lab up` starts it")
    before = subprocess.run(["crontab", "-l"], capture_output=True, text=True)
    assert MARK not in before.stdout, "a campaign line from an earlier run is still installed"
    subprocess.run(["crontab", "-"], input="MAILTO=''\n# kept by the test\n", text=True, check=True)
    yield
    if before.returncode == 0:
        subprocess.run(["crontab", "-"], input=before.stdout, text=True, check=True)
    else:
        subprocess.run(["crontab", "-r"], capture_output=True)


def test_cron_runs_the_campaign_to_the_end(slurm, real_crontab, hpcflow, tmp_path: Path) -> None:
    site = lab_site(tmp_path / "site.yaml", tmp_path / "scratch", limits={"max_array_size": 1001})
    camp = _campaign(tmp_path, site, max_in_flight=3)
    p = hpcflow("campaign", "schedule", str(camp), "--cron", "* * * * *")
    assert p.returncode == 0, p.stderr
    tab = _crontab()
    assert tab.startswith("MAILTO=''\n# kept by the test\n")
    line = next(ln for ln in tab.splitlines() if ln.endswith(MARK))
    assert line.startswith("* * * * * PATH=") and "/usr/bin" in line and "--db " in line
    log = tmp_path / "db" / "logs" / "campaign-demo-storms.log"
    deadline = time.monotonic() + 330
    doc: dict = {}
    while time.monotonic() < deadline:
        time.sleep(10)
        if not log.exists():
            continue
        s = hpcflow("campaign", "status", str(camp), "--json")
        assert s.returncode == 0, s.stderr
        doc = json.loads(s.stdout)
        if doc["finished"]:
            break
    text = log.read_text() if log.exists() else "(no log)"
    assert doc.get("finished"), f"cron did not finish the campaign: {doc}\n{text[-2000:]}"
    assert doc["events"]["done"] == 60
    # every batch submitted by a cron tick, once: the log shows each and the tracker agrees
    assert text.count("== ") >= 2 and "Traceback" not in text
    for b in (0, 1, 2):
        assert f"submitted batch {b} (" in text
    assert sorted(b["index"] for b in doc["batches"] if b["run_id"]) == [0, 1, 2]
    assert oct(log.stat().st_mode & 0o777) == "0o600"
    u = hpcflow("campaign", "unschedule", str(camp))
    assert u.returncode == 0 and "removed" in u.stdout
    assert _crontab() == "MAILTO=''\n# kept by the test\n"
    again = hpcflow("campaign", "unschedule", str(camp))
    assert again.returncode == 0 and "no crontab entry" in again.stdout
