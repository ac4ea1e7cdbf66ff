"""The rendered cleanup job script, run by bash here: it removes the run directory even while
the tracker appends to the run's events.jsonl in it (a refresh on the login node that sees
the run's last jobs end), which makes a single `rm -rf` fail with "Directory not empty"
(seen in CI with the lab tests side by side)."""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path

from .helpers import REPO

WF = "name: cl\ncleanup: always\nsteps:\n  - {name: a, run: 'true'}\n"


def _cleanup_script(tmp_path: Path) -> tuple[str, Path]:
    from hpcflow.compile.plan import compile_plan
    from hpcflow.render.scripts import render_run
    from hpcflow.spec.site import load_site
    from hpcflow.spec.validate import load_workflow

    site = load_site(str(REPO / "site_configs/lab.yaml"))
    wf = tmp_path / "wf.yaml"
    wf.write_text(WF)
    loaded = load_workflow(wf, [], site)
    run_dir = tmp_path / "scratch" / "cl-20261207-0000-aaaa"
    plan = compile_plan(loaded, site, 1001, "cl-20261207-0000-aaaa", str(run_dir))
    files = render_run(plan, loaded, site).files
    return files["scripts/hpcflow-cleanup.sh"], run_dir


def test_cleanup_removes_the_run_directory_while_events_are_appended(tmp_path: Path) -> None:
    script, run_dir = _cleanup_script(tmp_path)
    (run_dir / "logs" / "a").mkdir(parents=True)
    for i in range(300):
        (run_dir / "logs" / "a" / f"{i}.out").write_text("x\n")
    stop = time.monotonic() + 1.5

    def append() -> None:  # what EventLog.publish does: O_APPEND|O_CREAT, no mkdir
        while time.monotonic() < stop:
            try:
                with open(run_dir / "events.jsonl", "a") as f:
                    f.write("{}\n")
            except OSError:
                pass  # the directory is gone

    writer = threading.Thread(target=append)
    writer.start()
    time.sleep(0.05)
    p = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60)
    writer.join()
    assert p.returncode == 0, p.stderr
    assert not run_dir.exists() and "removed" in p.stdout


def test_cleanup_still_refuses_a_directory_that_is_not_the_runs(tmp_path: Path) -> None:
    script, run_dir = _cleanup_script(tmp_path)
    run_dir.parent.mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    run_dir.symlink_to(tmp_path / "elsewhere")
    p = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60)
    assert p.returncode == 1 and "not this run's directory" in p.stderr
    assert (tmp_path / "elsewhere").is_dir()
