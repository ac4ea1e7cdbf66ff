"""Files that producers write (a dynamic foreach's values, markers, dynamic/spec.json, logs,
result.json) are data from a job: read only when they are regular files inside the run
directory, bounded before they are read, split at newlines only, and never a traceback or a
hang (docs/security.md, "Surfaces")."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from hpcflow.errors import InvalidInput
from hpcflow.launch.expansion import FAILED, expand, read_spec
from hpcflow.runners.base import LocalRunner
from hpcflow.util.safeio import UnsafeFile, read_bounded

from .test_dynamic import _submitted


def _no_hang(fn, seconds: float = 5.0):
    """Run ``fn`` in a thread; fail (not hang the suite) when it does not return in time."""
    out: dict = {}

    def call() -> None:
        try:
            out["v"] = fn()
        except BaseException as e:  # raised again in the test's thread
            out["e"] = e

    t = threading.Thread(target=call, daemon=True)
    t.start()
    t.join(seconds)
    assert not t.is_alive(), f"blocked for over {seconds} s"
    if "e" in out:
        raise out["e"]
    return out.get("v")


def test_a_fifo_as_the_values_file_fails_the_expansion_at_once(tmp_path: Path) -> None:
    _, spec, producer = _submitted(tmp_path, None)
    os.mkfifo(producer / "events.csv")
    exp = _no_hang(lambda: expand(LocalRunner(), spec, None))
    assert exp.outcome == FAILED and f"{producer}/events.csv:1: a FIFO" in exp.reason


@pytest.mark.parametrize("target", ["/dev/zero", "/dev/urandom"])
def test_a_symlink_to_a_device_is_refused_by_name(tmp_path: Path, target: str) -> None:
    _, spec, producer = _submitted(tmp_path, None)
    (producer / "events.csv").symlink_to(target)
    exp = _no_hang(lambda: expand(LocalRunner(), spec, None))
    assert exp.outcome == FAILED and "leads out of" in exp.reason  # out of the run, first


def test_a_symlink_out_of_the_run_directory_is_refused(tmp_path: Path) -> None:
    _, spec, producer = _submitted(tmp_path, None)
    secret = tmp_path / "elsewhere.csv"
    secret.write_text("event\nA\n")
    (producer / "events.csv").symlink_to(secret)
    exp = expand(LocalRunner(), spec, None)
    assert exp.outcome == FAILED and "leads out of" in exp.reason and "events.csv:1:" in exp.reason
    # a symlink that stays inside the run directory is a file like any other
    inside = producer / "real.csv"
    inside.write_text("event\nA\n")
    (producer / "events.csv").unlink()
    (producer / "events.csv").symlink_to(inside)
    assert expand(LocalRunner(), spec, None).outcome == "expanded"


@pytest.mark.parametrize("sep", ["\x0b", "\x0c", "\x1c", "\x85", "\u2028", "\u2029"])
def test_values_split_at_newlines_only_and_separators_are_refused(tmp_path: Path, sep: str) -> None:
    # splitlines() would make 'A<sep>B' two elements, A and B, in place of one
    _, spec, producer = _submitted(tmp_path, None)
    spec["workflow"]["steps"][1]["foreach"]["event"]["from"].pop("column")
    spec["workflow"]["steps"][2]["foreach"]["event"]["from"].pop("column")
    (producer / "events.csv").write_text(f"C\nA{sep}B\n", encoding="utf-8")
    exp = expand(LocalRunner(), spec, None)
    assert exp.outcome == FAILED and f"{producer}/events.csv:2:" in exp.reason, exp.reason
    assert f"U+{ord(sep):04X}" in exp.reason


def test_crlf_lines_are_lines(tmp_path: Path) -> None:
    _, spec, producer = _submitted(tmp_path, None)
    spec["workflow"]["steps"][1]["foreach"]["event"]["from"].pop("column")
    spec["workflow"]["steps"][2]["foreach"]["event"]["from"].pop("column")
    (producer / "events.csv").write_bytes(b"A\r\nB\r\n")
    exp = expand(LocalRunner(), spec, None)
    assert exp.outcome == "expanded" and exp.values == {"hms.event": 2, "ras.event": 2}


@pytest.mark.parametrize("bidi", ["\u202e", "\u2066", "\u200f"])
def test_bidi_controls_in_a_value_are_refused_with_the_line(tmp_path: Path, bidi: str) -> None:
    _, spec, producer = _submitted(tmp_path, f"event\nA\nB{bidi}C\n")
    exp = expand(LocalRunner(), spec, None)
    assert exp.outcome == FAILED and "events.csv:3:" in exp.reason and "bidi" in exp.reason


def test_ten_million_values_are_refused_fast_and_small(tmp_path: Path) -> None:
    _, spec, producer = _submitted(tmp_path, None)
    spec["max_elements"] = 2_000_000
    (producer / "events.csv").write_bytes(
        b"event\n" + b"e1234567\n" * 10_000_000  # refused at the bound, before any other check
    )
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps(spec))
    code = (
        "import json, sys, time\n"
        "from hpcflow.launch.expansion import expand\n"
        "from hpcflow.runners.base import LocalRunner\n"
        "t = time.monotonic()\n"
        "exp = expand(LocalRunner(), json.load(open(sys.argv[1])), None)\n"
        "peak = [l for l in open('/proc/self/status') if l.startswith('VmHWM:')][0].split()[1]\n"
        "print(json.dumps([exp.outcome, exp.reason, time.monotonic() - t, int(peak) / 1024]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(spec_file)], capture_output=True,
                         text=True, timeout=120, check=True)  # fmt: skip
    outcome, reason, seconds, peak_mb = json.loads(out.stdout)
    assert outcome == FAILED and "over the bound of 2,000,000 values" in reason
    assert f"{producer}/events.csv:2000002:" in reason  # the line of the first one too many
    assert seconds < 20 and peak_mb < 500, (seconds, peak_mb)
    print(f"10M values refused in {seconds:.2f} s, peak {peak_mb:.0f} MB")


@pytest.mark.parametrize(
    ("content", "says"),
    [
        ('{"version": 1, "deferred": [', "not hpcflow's JSON (truncated?)"),
        ("[1, 2]", "written by another hpcflow (list)"),
        ("", "not hpcflow's JSON"),
    ],
)
def test_a_broken_spec_json_is_a_clear_failure(tmp_path: Path, content: str, says: str) -> None:
    _submitted(tmp_path, None)
    run_dir = tmp_path / "run"
    (run_dir / "dynamic/spec.json").write_text(content)
    with pytest.raises(InvalidInput) as e:
        read_spec(LocalRunner(), str(run_dir))
    assert says in str(e.value.problems[0]) and "dynamic/spec.json:" in str(e.value.problems[0])


def test_a_spec_json_with_keys_edited_is_refused_not_a_traceback(tmp_path: Path) -> None:
    _, spec, _ = _submitted(tmp_path, None)
    run_dir = tmp_path / "run"
    spec.pop("producers")
    (run_dir / "dynamic/spec.json").write_text(json.dumps(spec))
    with pytest.raises(InvalidInput, match="missing or malformed: producers"):
        read_spec(LocalRunner(), str(run_dir))
    spec["producers"] = {}  # well-formed, but names no producer the steps read from
    exp = expand(LocalRunner(), spec, None)
    assert exp.outcome == FAILED and "malformed (KeyError" in exp.reason


def test_a_fifo_spec_json_never_blocks(tmp_path: Path) -> None:
    _submitted(tmp_path, None)
    run_dir = tmp_path / "run"
    (run_dir / "dynamic/spec.json").unlink()
    os.mkfifo(run_dir / "dynamic/spec.json")
    with pytest.raises(InvalidInput, match="a FIFO"):
        _no_hang(lambda: read_spec(LocalRunner(), str(run_dir)))


def test_the_refresh_reads_no_fifo_or_device_as_a_result(tmp_path: Path) -> None:
    """result.json, outputs.json and markers are read by read_files: a FIFO or a device in
    their place reads as missing, at once, and a big one is bounded."""
    os.mkfifo(tmp_path / "result.json")
    (tmp_path / "zero.json").symlink_to("/dev/zero")
    (tmp_path / "big.json").write_bytes(b"x" * 1_000_000)
    got = _no_hang(lambda: LocalRunner().read_files(
        [str(tmp_path / n) for n in ("result.json", "zero.json", "big.json")]))  # fmt: skip
    assert got[str(tmp_path / "result.json")] is None and got[str(tmp_path / "zero.json")] is None
    assert len(got[str(tmp_path / "big.json")]) == 65537  # over 64 KiB: the caller sees it is
    tails = _no_hang(lambda: LocalRunner().read_tails([str(tmp_path / "result.json")], 100))
    assert tails == {str(tmp_path / "result.json"): None}


def test_read_bounded_checks_the_size_before_reading(tmp_path: Path) -> None:
    f = tmp_path / "f"
    f.write_bytes(b"y" * 5000)
    t = time.monotonic()
    with pytest.raises(UnsafeFile, match="over the bound of 4,096"):
        read_bounded(f, 4096)
    assert read_bounded(f, 4096, tail=True) == b"y" * 4096
    assert time.monotonic() - t < 1
    with pytest.raises(UnsafeFile, match="a directory"):
        read_bounded(tmp_path, 10)


def test_a_log_linked_out_of_the_run_directory_is_never_shown(tmp_path: Path) -> None:
    """A job may make its log a link to any file of yours: `logs`, `logs --tail`, the
    dashboard and the report read a log only inside the run directory."""
    from hpcflow.node.jobtool import log_path

    from .helpers import in_process
    from .synthetic import finished_run

    db, run_id = finished_run(tmp_path, 20)
    secret = tmp_path / "id_rsa"
    secret.write_text("PRIVATE KEY\n")
    log = Path(log_path(str(tmp_path / "run"), "hms", 0, "out"))
    log.parent.mkdir(parents=True, exist_ok=True)
    log.symlink_to(secret)
    cli = in_process(db)
    for args in ((), ("--tail", "5")):
        r = cli("logs", run_id, "hms", "0", *args)
        assert r.returncode != 0 and "PRIVATE KEY" not in r.stdout + r.stderr, (args, r)
        assert "leads out of" in r.stderr, r.stderr
