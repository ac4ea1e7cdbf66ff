"""CLI behaviour that needs no Slurm: render, errors, the database's permissions."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from click.testing import CliRunner

from hpcflow.cli import main


def test_render_writes_scripts_and_plan(repo: Path, site_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    res = CliRunner().invoke(
        main,
        [
            "--site",
            str(site_file),
            "render",
            str(repo / "examples/quickstart/workflow.yaml"),
            "-o",
            str(out),
            "--set",
            "n_events=3000",
        ],
    )
    assert res.exit_code == 0, res.output
    plan = json.loads((out / "plan.json").read_text())
    assert plan["sbatch_calls"] == 1 + 3 + 6 + 1  # 3000 events in chunks of 1001
    assert [j["array"] for j in plan["jobs"] if j["step"] == "hms"] == [
        "0-1000%4",
        "0-1000%4",
        "0-997%4",
    ]
    assert (out / "scripts/ras.sh").stat().st_mode & 0o777 == 0o750
    assert "nothing submitted" in res.output


def test_unknown_site_is_a_clear_error(repo: Path) -> None:
    res = CliRunner().invoke(
        main,
        ["--site", "atlantis", "render", str(repo / "examples/quickstart/workflow.yaml")]
        + ["-o", "x"],
    )
    assert res.exit_code == 2
    assert "no site config named 'atlantis' (known: lab" in res.stderr


def test_unknown_run_is_a_clear_error(tmp_path: Path) -> None:
    from hpcflow.store.db import open_db

    db = tmp_path / "d" / "t.db"
    res = CliRunner().invoke(main, ["--db", str(db), "status", "nope"])
    assert res.exit_code == 1 and not db.exists()  # a mistyped --db creates nothing
    assert res.stderr.strip() == (
        f"hpcflow: error: no tracker database at {db} (nothing submitted with this --db / "
        "HPCFLOW_DB?)"
    )
    open_db(db)
    res = CliRunner().invoke(main, ["--db", str(db), "status", "nope"])
    assert res.exit_code == 1
    assert res.stderr.strip() == "hpcflow: error: no run 'nope'; `hpcflow runs` lists them"


def test_database_permissions(tmp_path: Path) -> None:
    from hpcflow.store.db import open_db

    db = tmp_path / "d" / "t.db"
    open_db(db).dispose()  # as the first submit creates it
    res = CliRunner().invoke(main, ["--db", str(db), "runs", "--json"])
    assert res.exit_code == 0 and json.loads(res.output) == {"runs": []}
    assert stat.S_IMODE(db.stat().st_mode) == 0o600
    assert stat.S_IMODE(db.parent.stat().st_mode) == 0o700
    os.chmod(db, 0o666)
    res = CliRunner().invoke(main, ["--db", str(db), "status"])  # a command that writes
    assert res.exit_code == 1 and "writable by group/others" in res.stderr


def test_sites_list_and_show() -> None:
    res = CliRunner().invoke(main, ["sites", "list"])
    assert res.exit_code == 0 and res.output.startswith("lab\t")
    res = CliRunner().invoke(main, ["sites", "show", "lab"])
    assert '"max_time": "1d"' in res.output


def test_watch_pace() -> None:
    from datetime import datetime, timezone

    from hpcflow.cli.view import pace

    t0 = datetime(2026, 11, 22, 1, 0, 0, tzinfo=timezone.utc).timestamp()
    assert pace(0, 10, "2026-11-22T01:00:00Z", t0 + 60) == ""
    assert pace(5, 20, "2026-11-22T01:00:00Z", t0 + 60) == "5.0/min ETA 3m00s"
    assert pace(20, 20, "2026-11-22T01:00:00Z", t0 + 120) == "10.0/min"
