"""sbatch/sacct/squeue/scontrol parsers and argv builders, on output captured from the lab
cluster (tests/captured/, Slurm 22.05)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from hpcflow.slurm.commands import (
    SACCT_FIELDS,
    dependency_string,
    ended_within,
    expand_array_ids,
    is_temporary_error,
    max_array_size,
    parse_sacct,
    parse_sbatch,
    parse_show_config,
    parse_squeue,
    sacct_argv,
    sbatch_argv,
    squeue_argv,
)
from hpcflow.states import RunState, TaskState, map_slurm_state, run_state

CAP = Path(__file__).parent / "captured"
# the --format of the captures made before MaxRSS/ReqMem were added
FIELDS_V1 = [
    "JobID",
    "JobIDRaw",
    "JobName",
    "State",
    "ExitCode",
    "Start",
    "End",
    "NodeList",
    "Reason",
]


def cap(name: str) -> str:
    return (CAP / name).read_text()


def test_sacct_mixed() -> None:
    rows = {(r.job_id, r.task_id): r for r in parse_sacct(cap("sacct-mixed.txt"), FIELDS_V1)}
    piped = rows[("57", 0)]
    assert piped.name == "name|with|pipes" and piped.state == "RUNNING" and piped.node == "vm"
    # the pending remainder '57_[4-99%4]' expands to one row per task
    assert all(rows[("57", t)].state == "PENDING" for t in range(4, 100))
    assert ("57", 100) not in rows
    assert sorted(t for (j, t) in rows if j == "58") == [1, 2, 3, 7]
    assert rows[("59", None)].state == "CANCELLED by 0"
    assert rows[("60", None)].exit_code == 7
    assert (rows[("61", None)].exit_code, rows[("61", None)].signal) == (0, 9)
    assert rows[("62", None)].end is None  # 'Unknown'


def test_sacct_skips_steps() -> None:
    rows = parse_sacct(cap("sacct-with-steps.txt"), FIELDS_V1)
    assert [(r.job_id, r.task_id) for r in rows] == [("60", None), ("61", None)]


def test_sacct_het_job_rows_skipped() -> None:
    text = (
        "300+0|300|het|COMPLETED|0:0|2026-11-22T01:00:00|2026-11-22T01:00:01|vm|None\n"
        "300+1|301|het|COMPLETED|0:0|2026-11-22T01:00:00|2026-11-22T01:00:01|vm|None\n"
    )
    assert parse_sacct(text, FIELDS_V1) == []


def test_kill_on_invalid_dep_is_upstream_failed() -> None:
    rows = [
        r
        for r in parse_sacct(cap("sacct-kill-invalid-dep.txt"), FIELDS_V1)
        if r.state.startswith("CANCELLED")
    ]
    assert rows, "capture holds the killed dependents"
    for r in rows:
        assert (
            map_slurm_state(r.state, r.reason, started=r.node is not None)
            is TaskState.UPSTREAM_FAILED
        )


def test_user_cancel_is_cancelled() -> None:
    r = next(r for r in parse_sacct(cap("sacct-mixed.txt"), FIELDS_V1) if r.job_id == "59")
    assert map_slurm_state(r.state, r.reason, started=r.node is not None) is TaskState.CANCELLED


def test_squeue_array_and_never_satisfied() -> None:
    rows = parse_squeue(cap("squeue-never-satisfied.txt"))
    assert [(r.task_id, r.reason) for r in rows] == [
        (1, "DependencyNeverSatisfied"),
        (2, "DependencyNeverSatisfied"),
    ]
    assert map_slurm_state("PENDING", rows[0].reason) is TaskState.UPSTREAM_FAILED
    collapsed = parse_squeue(cap("squeue-collapsed.txt"))
    assert len([r for r in collapsed if r.state == "PENDING"]) == 96
    assert len(parse_squeue(cap("squeue-array.txt"))) == 100


@pytest.mark.parametrize(
    "spec,ids",
    [("0-99%4", list(range(100))), ("1-3,7", [1, 2, 3, 7]), ("0-10:5", [0, 5, 10]), ("4", [4])],
)
def test_expand_array_ids(spec: str, ids: list[int]) -> None:
    assert expand_array_ids(spec) == ids


def test_sbatch_output() -> None:
    assert parse_sbatch(cap("sbatch-ok.stdout")) == "76"
    assert parse_sbatch("1234;lab\n") == "1234"
    with pytest.raises(ValueError):
        parse_sbatch(cap("sbatch-refused.stdout"))
    assert not is_temporary_error(cap("sbatch-refused.stderr"))
    assert is_temporary_error(
        "sbatch: error: Batch job submission failed: Socket timed out on send/recv operation"
    )


def test_show_config() -> None:
    assert max_array_size(parse_show_config(cap("scontrol-show-config.txt"))) == 10001
    assert max_array_size({}) == 1001


STATE_TABLE = [
    ("COMPLETED", "", TaskState.COMPLETED),
    ("FAILED", "", TaskState.FAILED),
    ("TIMEOUT", "", TaskState.TIMEOUT),
    ("OUT_OF_MEMORY", "", TaskState.OUT_OF_MEMORY),
    ("NODE_FAIL", "", TaskState.NODE_FAIL),
    ("BOOT_FAIL", "", TaskState.NODE_FAIL),
    ("PREEMPTED", "", TaskState.PREEMPTED),
    ("CANCELLED by 1000", "", TaskState.CANCELLED),
    ("REQUEUED", "", TaskState.PENDING),
    ("SUSPENDED", "", TaskState.RUNNING),
    ("PENDING", "Priority", TaskState.PENDING),
    ("RUNNING", "None", TaskState.RUNNING),
    ("PENDING", "DependencyNeverSatisfied", TaskState.UPSTREAM_FAILED),
    ("SOMETHING_NEW", "", TaskState.UNKNOWN),
    ("", "", TaskState.UNKNOWN),
]


@pytest.mark.parametrize("state,reason,expected", STATE_TABLE)
def test_state_table(state: str, reason: str, expected: TaskState) -> None:
    assert map_slurm_state(state, reason) is expected


def test_run_state() -> None:
    T = TaskState
    assert run_state([T.COMPLETED, T.SKIPPED]) is RunState.COMPLETED
    assert run_state([T.COMPLETED, T.FAILED]) is RunState.FAILED
    assert run_state([T.COMPLETED, T.UNKNOWN]) is RunState.RUNNING  # never success
    assert run_state([T.PENDING, T.PENDING]) is RunState.PENDING
    assert run_state([T.CANCELLED, T.COMPLETED], cancelled=True) is RunState.CANCELLED


def test_argv_builders() -> None:
    assert (
        dependency_string([("afterok", "1"), ("aftercorr", "2"), ("afterok", "3")])
        == "afterok:1:3,aftercorr:2"
    )
    assert dependency_string([]) is None
    argv = sbatch_argv(
        "/r/s.sh",
        ["/r/t"],
        job_name="hpcflow.r.a.0",
        output="/r/o",
        array="0-9%2",
        dependency="afterok:1",
    )
    assert argv == [
        "sbatch",
        "--parsable",
        "--job-name=hpcflow.r.a.0",
        "--output=/r/o",
        "--open-mode=append",
        "--kill-on-invalid-dep=yes",
        "--array=0-9%2",
        "--dependency=afterok:1",
        "/r/s.sh",
        "/r/t",
    ]
    assert sacct_argv(["5", "7"], "2026-11-21T00:00:00")[-2:] == ["-j", "5,7"]
    assert "-r" not in squeue_argv(["5"])  # pending arrays stay one line: A_[0-99]
    assert sacct_argv(["5"], "2026-11-21T00:00:00")[:2] == ["sacct", "-X"]
    assert "-X" not in sacct_argv(["5_3"], "2026-11-21T00:00:00", steps=True)


def test_meta_record_does_not_override_split_tasks() -> None:
    """After b_0 and b_1 ran, sacct still shows the killed remainder as '498_[0-2]'."""
    rows = {
        (r.job_id, r.task_id): r
        for r in parse_sacct(cap("sacct-meta-record-after-split.txt"), FIELDS_V1)
    }
    assert rows[("498", 0)].state == rows[("498", 1)].state == "COMPLETED"
    killed = rows[("498", 2)]
    assert killed.state == "CANCELLED" and killed.reason == "None"
    assert (
        map_slurm_state(
            killed.state, killed.reason, started=killed.node is not None, has_dependency=True
        )
        is TaskState.UPSTREAM_FAILED
    )
    fan_in = rows[("499", None)]
    assert (
        map_slurm_state(fan_in.state, fan_in.reason, started=False, has_dependency=True)
        is TaskState.UPSTREAM_FAILED
    )
    assert (
        map_slurm_state("CANCELLED by 0", "None", started=False, has_dependency=True)
        is TaskState.CANCELLED
    )


def test_over_memory_kill_is_out_of_memory() -> None:
    """Without cgroups, OverMemoryKill SIGKILLs the job and sacct says FAILED 0:9; the batch
    step's MaxRSS over ReqMem is the evidence (captured with the current SACCT_FIELDS)."""
    (row,) = parse_sacct(cap("sacct-overmemorykill.txt"))
    assert (row.state, row.signal, row.req_mem_mb) == ("FAILED", 9, 100)
    assert row.max_rss_mb is not None and row.max_rss_mb > 600
    assert row.oom_evidence
    (plain,) = parse_sacct(cap("sacct-overmemorykill.txt").replace("629344K", "1000K"))
    assert not plain.oom_evidence


def test_sparse_pending_array_and_het_job() -> None:
    """'685_[1-3,7]' (held sparse array) expands to its four tasks; het-job components
    '688+0'/'688+1' are not hpcflow jobs and are skipped."""
    rows = parse_sacct(cap("sacct-sparse-and-het.txt"))
    assert [(r.job_id, r.task_id) for r in rows] == [("685", 1), ("685", 2), ("685", 3), ("685", 7)]
    assert {r.reason for r in rows} == {"JobHeldUser"} and rows[0].req_mem_mb == 256


def test_sigkill_without_step_data_is_not_confirmed() -> None:
    from datetime import datetime

    text = cap("sacct-overmemorykill.txt")
    main_only = "\n".join(ln for ln in text.splitlines() if ".batch" not in ln) + "\n"
    (row,) = parse_sacct(main_only)
    assert not row.has_steps and not row.oom_evidence
    ended = datetime.strptime(row.end or "", "%Y-%m-%dT%H:%M:%S")
    assert row.killed_without_step_data(ended.replace(second=ended.second))
    assert not row.killed_without_step_data(datetime(2030, 1, 1))  # long after: final
    (full,) = parse_sacct(text)
    assert full.has_steps and not full.killed_without_step_data(ended)


def test_sinfo_partitions_parse() -> None:
    from hpcflow.slurm.commands import parse_sinfo

    real = (CAP / "sinfo-partitions.txt").read_text()
    assert parse_sinfo(real) == {"debug": (2, 16, 16000), "gpu": (2, 16, 16000)}
    # sinfo groups unlike nodes: "64+" is the smallest of a group; the largest node wins
    grouped = "big*|gpu:a100:4(S:0-1)|2-00:00:00|64+|512000+\nbig*|(null)|2-00:00:00|128|1024000\n"
    assert parse_sinfo(grouped) == {"big": (4, 128, 1024000)}


@pytest.mark.parametrize(
    ("end", "within"),
    [
        ("2026-12-06T10:00:00", True),  # 30 s before now
        ("2026-12-06T09:58:00", False),  # 150 s before
        ("Unknown", False),  # pending: no end yet
        (None, False),
        ("", False),
        ("2026-12-06T10:00:00+01:00", False),  # not sacct's format: never "recent"
        ("2026-13-06T10:00:00", False),
    ],
)
def test_ended_within_reads_sacct_end_times(end, within):
    now = datetime(2026, 12, 6, 10, 0, 30)
    assert ended_within(end, now, 120) is within


def test_a_step_row_without_maxrss_is_not_step_data_yet() -> None:
    """slurmdbd records a step's start before its end and usage: a .batch row with an empty
    MaxRSS right after a SIGKILL does not say "not memory" yet (seen on the lab: the element
    was taken for FAILED one second after an over-memory kill)."""
    from datetime import datetime

    text = cap("sacct-overmemorykill.txt")
    lines = [ln.split("|") for ln in text.splitlines() if ln]
    rss = SACCT_FIELDS.index("MaxRSS")
    started = (
        "\n".join(
            "|".join(p[:rss] + [""] + p[rss + 1 :]) if ".batch" in p[0] else "|".join(p)
            for p in lines
        )
        + "\n"
    )
    (row,) = parse_sacct(started)
    assert row.has_steps and row.max_rss_mb is None and not row.oom_evidence
    ended = datetime.strptime(row.end or "", "%Y-%m-%dT%H:%M:%S")
    assert row.killed_without_step_data(ended)  # wait for the usage, within the grace
    assert not row.killed_without_step_data(datetime(2030, 1, 1))


def test_a_job_record_not_complete_yet_does_not_decide_a_kill() -> None:
    """Captured on the lab one second after an over-memory kill of a job that ran for one
    second: slurmdbd had the allocation as JobName 'allocation', ReqMem '16?'."""
    from datetime import datetime

    text = (
        "78610|78610|allocation|FAILED|0:9|2026-12-06T10:38:25|2026-12-06T10:38:26|vm|None||16?\n"
        "78610.batch|78610.batch|batch|CANCELLED by 0|0:9|2026-12-06T10:38:25|"
        "2026-12-06T10:38:26|vm||471192K|\n"
    )
    (row,) = parse_sacct(text)
    assert row.req_mem_mb is None and row.max_rss_mb == 460 and not row.oom_evidence
    assert row.killed_without_step_data(datetime(2026, 12, 6, 10, 38, 28))
    assert not row.killed_without_step_data(datetime(2026, 12, 6, 11, 0, 0))


def test_a_placeholder_record_is_not_trusted_whatever_its_exit_code() -> None:
    """Captured on the lab (CI, 2026-12-06) one second after an over-memory kill: slurmdbd's
    placeholder said FAILED with ExitCode 9:0 (the script exited 137), without usage; taken
    as final, the element was FAILED instead of OUT_OF_MEMORY."""
    from datetime import datetime

    from hpcflow.states import TaskState
    from hpcflow.tracker.reconcile import Tracked, observe

    text = (
        "86318|86318|allocation|FAILED|9:0|2026-12-06T14:34:25|2026-12-06T14:34:26|vm|None||16?\n"
    )
    (row,) = parse_sacct(text)
    assert row.signal in (None, 0) and row.sigkilled
    soon, later = datetime(2026, 12, 6, 14, 34, 28), datetime(2026, 12, 6, 14, 40, 0)
    assert row.record_incomplete(soon) and not row.record_incomplete(later)
    task = Tracked(1, "r", "oom", 0, "86318", None, TaskState.RUNNING)
    assert observe([row], [task], soon) == {}  # the element stays as it was
    assert observe([row], [task], later)[("86318", None)].state is TaskState.FAILED


def test_a_script_that_exits_137_was_killed() -> None:
    """Captured on the lab (Slurm 22.05): sacct prints an exit status of 128 or more less
    128, so a job script that exited 137 shows FAILED '9:0' (`sbatch --wrap 'exit 137'`,
    job 89043). Job 89042's element was SIGKILLed (alone) at 97% of its 400M: its shells
    exited 137, as when a cgroup OOM kill takes the largest process, or when the batch shell
    outlives its child in a kill of the whole tree. That is an out-of-memory kill."""
    from datetime import datetime

    from hpcflow.states import TaskState
    from hpcflow.tracker.reconcile import Tracked, observe

    at_limit, bare = parse_sacct(cap("sacct-exit137.txt"))
    assert (at_limit.exit_code, at_limit.signal, at_limit.req_mem_mb) == (9, 0, 400)
    assert at_limit.sigkilled and at_limit.max_rss_mb == 387 and at_limit.oom_evidence
    assert bare.sigkilled and not bare.oom_evidence  # no memory to speak of: FAILED
    later = datetime(2026, 12, 6, 17, 0, 0)
    tasks = [Tracked(1, "r", "s", 0, "89042", None, TaskState.RUNNING),
             Tracked(2, "r", "s", 0, "89043", None, TaskState.RUNNING)]  # fmt: skip
    seen = observe([at_limit, bare], tasks, later)
    assert seen[("89042", None)].state is TaskState.OUT_OF_MEMORY
    assert seen[("89043", None)].state is TaskState.FAILED
    # within the grace after its end, a kill whose step usage has not arrived waits
    (main_only,) = parse_sacct(cap("sacct-exit137.txt").splitlines()[0] + "\n")
    assert main_only.killed_without_step_data(datetime(2026, 12, 6, 16, 2, 45))
    assert observe([main_only], tasks[:1], datetime(2026, 12, 6, 16, 2, 45)) == {}


@pytest.mark.parametrize(
    ("exit_text", "code", "killed"),
    [("0:9", None, True), ("9:0", 9, True), ("137:0", 137, True), ("3:0", 3, False),
     ("0:15", None, False), ("1:0", 1, False)],
)  # fmt: skip
def test_which_exit_codes_mean_sigkill(exit_text: str, code: int | None, killed: bool) -> None:
    line = f"5|5|j|FAILED|{exit_text}|2026-12-06T10:00:00|2026-12-06T10:00:01|vm|None||1G\n"
    (row,) = parse_sacct(line)
    assert row.sigkilled is killed
    if code is not None:
        assert row.exit_code == code
