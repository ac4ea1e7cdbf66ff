"""The usage query (once per finished chunk): argv, and parsing output captured on the lab
(tests/captured/sacct-usage.txt, Slurm 22.05: array and plain jobs, an over-memory kill, GPUs,
4 CPUs), plus rows it must leave out."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest

from hpcflow.slurm.usage import USAGE_FIELDS, Usage, cpu_seconds, parse_usage, usage_argv

CAP = Path(__file__).parent / "captured"


def test_usage_argv_asks_steps_too() -> None:
    argv = usage_argv(["12", "13"], "2026-12-06T09:00:00")
    assert "-X" not in argv  # MaxRSS lives on the step rows
    assert argv[:3] == ["sacct", "-P", "-n"] and argv[-2:] == ["-j", "12,13"]
    assert f"--format={','.join(USAGE_FIELDS)}" in argv
    assert "--starttime=2026-12-06T09:00:00" in argv


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("00:00.019", 0.019),
        ("01:02.500", 62.5),
        ("1:00:00", 3600),
        ("2-03:04:05", 183845),
        ("12:34", 754),
        ("", None),
        ("INVALID", None),
    ],  # fmt: skip
)
def test_cpu_seconds(text, seconds) -> None:
    got = cpu_seconds(text)
    assert got == (pytest.approx(seconds) if seconds is not None else None)


def test_parse_captured_usage() -> None:
    got = parse_usage((CAP / "sacct-usage.txt").read_text())
    # 4 CPUs, MaxRSS from the .batch step (28044K), the allocation's ReqMem and time limit
    assert got[("39", 0)] == Usage(
        alloc_cpus=4, elapsed_s=4, timelimit_s=86400, total_cpu_s=pytest.approx(0.073),
        max_rss_mb=27, req_mem_mb=400, gpus=0, steps=1)  # fmt: skip
    # a plain job killed for memory: 476084K against 100M
    oom = got[("56", None)]
    assert (oom.max_rss_mb, oom.req_mem_mb, oom.elapsed_s) == (465, 100, 1)
    assert got[("58", None)].total_cpu_s == pytest.approx(1.609)
    # GPUs from AllocTRES; a step without MaxRSS (too short to be sampled) leaves it None
    gpu = got[("63", 3)]
    assert (gpu.gpus, gpu.timelimit_s, gpu.max_rss_mb, gpu.steps) == (1, 600, None, 1)
    assert len(got) == 2 + 1 + 1 + 6 + 5


def test_rows_that_used_nothing_are_left_out() -> None:
    text = (
        "70_[3-9]|PENDING|1|0|10|00:00:00||256M|billing=1,cpu=1,mem=256M,node=1\n"  # pending
        "71+0|COMPLETED|1|5|10|00:01.000||256M|cpu=1\n"  # a het-job component
        "72.batch|COMPLETED|1|5||00:01.000|2048K||cpu=1\n"  # a step without its allocation
        "73_1|CANCELLED by 0|1|0|UNLIMITED|00:00:00||1G|billing=1,cpu=1,gres/gpu:a100=2,"
        "gres/gpu=2,mem=1G,node=1\n"
        "cut|short\n"
    )
    got = parse_usage(text)
    assert list(got) == [("73", 1)]
    assert got[("73", 1)].timelimit_s is None and got[("73", 1)].gpus == 2


def test_a_job_is_settled_when_its_step_rows_came_or_never_will() -> None:
    from datetime import datetime

    from hpcflow.tracker.usage import settled

    now = datetime(2026, 12, 6, 10, 0, 0)
    ran, waiting = Usage(elapsed_s=5, steps=1), Usage(elapsed_s=5, steps=0)
    never_ran = Usage(elapsed_s=0, steps=0)  # cancelled while pending
    assert settled({("5", 0): ran, ("5", 1): never_ran}, "5", [0, 1], "2026-12-06T09:59:59", now)
    assert not settled({("5", 0): waiting}, "5", [0], "2026-12-06T09:59:00", now)
    assert settled({("5", 0): waiting}, "5", [0], "2026-12-06T09:57:59", now)  # 121 s ago
    assert settled({}, "5", [0], None, now)  # slurmdbd has nothing: purged, nothing will come


def test_efficiency_of_a_recorded_run_needs_no_slurm(hpcflow, tmp_path: Path) -> None:
    """A finished run whose usage was collected: `efficiency --json` from the tracker alone
    (no sacct on PATH), the packed and per-step numbers as the elements recorded them."""
    import json

    from .synthetic import finished_run

    db, run_id = finished_run(tmp_path, 200)
    env = {"HPCFLOW_DB": str(db), "PATH": "/usr/bin:/bin"}
    p = hpcflow("efficiency", run_id, "--json", "--step", "ras", check=True, extra_env=env)
    doc = json.loads(p.stdout)
    ras = doc["steps"]["ras"]
    assert list(doc["steps"]) == ["ras"] and ras["elements"] == 400
    assert ras["measured"] == 400 - 2 and ras["ran_out"] == {"memory": 1, "time": 0}
    assert ras["cpu"]["requested"] == 2 and ras["mem"]["requested_mb"] == 4096
    # the synthetic run burns 0.8 s of CPU per second of wall on 1 CPU, against 2 asked
    assert ras["cpu"]["efficiency"] == pytest.approx(0.4, abs=0.01)
    assert 300 <= ras["mem"]["p50_mb"] <= ras["mem"]["p95_mb"] <= ras["mem"]["max_mb"] <= 1500
    # ras[1] ran out of memory at 4096M: never suggested less, whatever the peaks say
    assert (
        ras["suggest"]["mem"] == "5000M" and "ran out of memory at" in ras["suggest"]["why"]["mem"]
    )
    assert ras["suggest"]["time"].endswith("m")
    bad = hpcflow("efficiency", run_id, "--step", "nope", extra_env=env)
    assert bad.returncode != 0 and "no step 'nope'" in bad.stderr


def test_states_over_time_end_where_the_run_ended(tmp_path: Path) -> None:
    """The report's state chart: every element PENDING at the start, and its last bin holds
    exactly the run's final counts, even for moves recorded after the last element ended."""
    from hpcflow.report.data import BINS, states_over_time
    from hpcflow.store.db import open_db, session

    from .synthetic import finished_run

    db, run_id = finished_run(tmp_path, 50)
    engine = open_db(db)
    with session(engine) as s:
        c = s.connection()
        totals = dict(c.exec_driver_sql("SELECT step, count(*) FROM task GROUP BY step").all())
        final = dict(c.exec_driver_sql("SELECT state, count(*) FROM task GROUP BY state").all())
        start = datetime(2026, 12, 6, 0, 0, tzinfo=timezone.utc).timestamp()
        series = states_over_time(c, run_id, totals, start, start + 1800)  # ends before moves
    assert all(len(v) == BINS for v in series.values())
    assert series["PENDING"][0] == sum(totals.values())
    assert {k: v[-1] for k, v in series.items() if v[-1]} == final


def test_collected_usage_lands_on_every_element_of_its_task(tmp_path: Path) -> None:
    """A real tracker: array job 39 ended (elements 1 and 2 packed in task 1). One sacct,
    and each element stores its task's usage; the job is marked and never asked again."""
    import json as _json

    from hpcflow.runners.base import LocalRunner, Result
    from hpcflow.slurm.client import SlurmClient
    from hpcflow.store.db import Job, Run, StepRow, Task, open_db, session
    from hpcflow.tracker.usage import collect_usage

    class Sacct(LocalRunner):
        asked: list[list[str]] = []

        def run(self, argv, **_):  # type: ignore[no-untyped-def, override]
            self.asked.append(argv)
            return Result(argv, 0, (CAP / "sacct-usage.txt").read_text(), "")

    engine = open_db(tmp_path / "t.db")
    with session(engine) as s:
        s.add(Run(id="r", workflow="w", site="lab", state="COMPLETED", run_dir="/x",
                  workflow_path="/w.yaml"))  # fmt: skip
        s.flush()
        s.add(StepRow(run_id="r", name="a", position=0, total=3))
        s.add(Job(id=1, run_id="r", step="a", job_index=0, chunk=0, name="hpcflow.r.a.0",
                  slurm_job_id="39", array="0-1",
                  submitted_at=datetime(2026, 12, 1, tzinfo=timezone.utc)))  # fmt: skip
        s.flush()
        for index, task in ((0, 0), (1, 1), (2, 1)):
            s.add(Task(run_id="r", step="a", index=index, job_id=1, task_id=task,
                       state="COMPLETED", end="2026-12-01T00:00:00"))  # fmt: skip
        s.commit()
    runner = Sacct()
    with session(engine) as s:
        assert collect_usage(s.connection(), SlurmClient(runner), ["r"]) == 1
        s.commit()
    with session(engine) as s:
        db = s.connection()
        used = {i: _json.loads(u) for i, u in db.exec_driver_sql('SELECT "index", usage FROM task')}
        assert used[1] == used[2] and used[0] != used[1]
        assert all(u["alloc_cpus"] == 4 for u in used.values()), used
        assert collect_usage(db, SlurmClient(runner), ["r"]) == 0
    assert len(runner.asked) == 1  # once in the life of the chunk
