"""`-v` logs every command hpcflow runs (where, exit status, duration) and every tracker
decision with its reason; credentials never reach the log."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from hpcflow.cli import main

from .helpers import edit_yaml

SECRET = "s3cr3t-registry-pw"


def test_commands_are_logged_without_credentials(
    tmp_path: Path, site_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("APPTAINER_DOCKER_PASSWORD", SECRET)
    # a command line that holds the secret (a path someone named after it) is masked too
    py = tmp_path / SECRET / "python"
    py.parent.mkdir()
    py.symlink_to(sys.executable)
    edit_yaml(site_file, python=str(py))
    res = CliRunner().invoke(main, ["-v", "sites", "check", str(site_file)])
    assert "Traceback" not in res.stderr
    assert "hpcflow: local: scontrol show config -> " in res.stderr
    assert f"{tmp_path}/***/python -c" in res.stderr and " -> exit 0 in " in res.stderr
    assert SECRET not in res.stderr  # the log (stdout echoes the site file's own python path)


def test_without_v_nothing_is_logged(site_file: Path) -> None:
    res = CliRunner().invoke(main, ["sites", "check", str(site_file)])
    assert "hpcflow: local:" not in res.stderr


def test_tracker_decisions_are_logged_with_their_reason(caplog: pytest.LogCaptureFixture) -> None:
    from hpcflow.tracker.events import EventLog

    class FakeSession:
        def add(self, _obj: object) -> None:
            pass

    caplog.set_level(logging.DEBUG, logger="hpcflow")
    EventLog().add(
        FakeSession(),  # type: ignore[arg-type]
        run_id="r1",
        step="hms",
        index=3,
        old_state="PENDING",
        new_state="LOST",
        reason="not in sacct or squeue 312 s after submission",
    )
    assert "tracker: r1 hms[3]: PENDING -> LOST: not in sacct or squeue 312 s" in caplog.text
