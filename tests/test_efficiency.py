"""Efficiency: percentiles, suggestions and their floors, the per-step document, and the
overrides file it writes (pure; the lab test is tests/test_efficiency_slurm.py)."""

from __future__ import annotations

import pytest

from hpcflow.errors import InvalidInput
from hpcflow.tracker.efficiency import (
    ElementUse,
    Floors,
    StepEfficiency,
    mem_text,
    percentile,
    suggest,
    summarize_step,
    time_text,
)


@pytest.mark.parametrize(
    ("values", "p", "want"),
    [
        ([], 50, None),
        ([5.0], 95, 5.0),
        ([1, 2, 3, 4], 50, 2),
        ([1, 2, 3, 4], 95, 4),
        (list(range(1, 101)), 95, 95),
        (list(range(1, 101)), 50, 50),
    ],  # fmt: skip
)
def test_percentile_is_nearest_rank(values, p, want) -> None:
    assert percentile([float(v) for v in values], p) == want


@pytest.mark.parametrize(
    ("mb", "text"),
    [
        (1, "100M"),
        (1560, "1600M"),
        (1600, "1600M"),
        (9_999, "10000M"),
        (10_000, "10G"),
        (20_481, "21G"),
    ],  # fmt: skip
)
def test_memory_rounds_up(mb, text) -> None:
    assert mem_text(mb) == text


@pytest.mark.parametrize(
    ("s", "text"),
    [
        (1, "1m"),
        (60, "1m"),
        (61, "2m"),
        (900, "15m"),
        (5400, "1h30m"),
        (3600, "1h"),
        (86400 + 7200, "1d2h"),
    ],  # fmt: skip
)
def test_time_rounds_up_to_the_minute(s, text) -> None:
    assert time_text(s) == text


def test_the_suggestion_is_the_p95_plus_the_margin() -> None:
    peaks = [1000.0] * 94 + [1300.0] * 6  # p95 1300
    got = suggest(peaks, [600.0] * 100, Floors())
    assert got["mem"] == "1600M"  # 1300 x 1.2 = 1560 -> 1600M
    assert got["time"] == "12m"  # 600 s x 1.2 = 720 s
    assert "p95" in got["why"]["mem"]


def test_never_below_a_measured_peak() -> None:
    peaks = [100.0] * 99 + [5000.0]  # p95 100, but one element needed 5000
    assert suggest(peaks, [], Floors())["mem"] == "5000M"


def test_never_below_the_request_an_element_ran_out_of() -> None:
    """Elements that ran out of memory at 2000M needed more than that: the suggestion goes
    above it even though every measured peak is small; timeouts likewise."""
    got = suggest([300.0] * 60, [60.0] * 60, Floors(mem_mb=2000, time_s=3600, oom=2, timeouts=1))
    assert got["mem"] == "2400M" and "ran out of memory at 2000M" in got["why"]["mem"]
    assert got["time"] == "1h12m" and "ran out of time" in got["why"]["time"]
    # a floor from an OOM does not lower a suggestion that is already above it
    assert suggest([3000.0], [], Floors(mem_mb=2000, oom=1))["mem"] == "3600M"


def test_min_samples_and_the_partition_limit() -> None:
    assert suggest([100.0] * 3, [60.0] * 3, Floors(), min_samples=50) == {}
    got = suggest([], [36_000.0], Floors(), partition_time_s=7200)
    assert got["time"] == "2h"  # never above the partition's limit


def test_a_step_document() -> None:
    els = [ElementUse("COMPLETED", cpus=2, mem_req_mb=6144, time_limit_s=3600, elapsed_s=100,
                      cpu_s=150, peak_mb=1000) for _ in range(9)]  # fmt: skip
    els.append(ElementUse("SKIPPED", cpus=2, mem_req_mb=6144, time_limit_s=3600))
    els.append(ElementUse("FAILED", cpus=2, mem_req_mb=6144, time_limit_s=3600, elapsed_s=50,
                          cpu_s=10, peak_mb=9999))  # fmt: skip
    doc = summarize_step(StepEfficiency(els))
    assert doc["elements"] == 11 and doc["measured"] == 9
    assert doc["states"] == {"COMPLETED": 9, "FAILED": 1, "SKIPPED": 1}
    # CPU: (9 x 150 + 10) / (2 x (9 x 100 + 50))
    assert doc["cpu"] == {"requested": 2, "used_s": 1360, "efficiency": round(1360 / 1900, 4)}
    # what is needed comes from the elements that completed: the failed one's peak is not
    assert doc["mem"]["max_mb"] == 1000 and doc["mem"]["requested_mb"] == 6144
    assert doc["elapsed"] == {"limit_s": 3600, "p50_s": 100, "p95_s": 100, "max_s": 100}
    assert doc["core_hours"] == {"used": round(1360 / 3600, 4), "reserved": round(1900 / 3600, 4)}
    assert doc["suggest"]["mem"] == "1200M" and doc["suggest"]["time"] == "2m"


def _wf(tmp_path, text: str = ""):
    wf = tmp_path / "wf.yaml"
    wf.write_text(
        "name: ov\nsteps:\n  - name: hms\n    resources: {mem: 6G, time: 1h, cpus: 2}\n"
        "    run: 'true'\n  - name: ras\n    after: [hms]\n    run: 'true'\n" + text
    )
    return wf


def test_overrides_replace_named_fields_only(tmp_path) -> None:
    from hpcflow.spec.validate import load_workflow

    ov = tmp_path / "ov.yaml"
    ov.write_text("steps:\n  hms:\n    resources: {mem: 1600M, time: 15m}\n")
    wf = load_workflow(_wf(tmp_path), resources=ov).workflow
    hms = next(s for s in wf.steps if s.name == "hms")
    assert (hms.resources.mem, hms.resources.time, hms.resources.cpus) == (1600, 900, 2)  # MB, s


@pytest.mark.parametrize(
    ("text", "line", "says"),
    [
        ("steps:\n  hsm:\n    resources: {mem: 1G}\n", 2, "no step 'hsm' (did you mean 'hms'"),
        ("steps:\n  hms:\n    resources: {mem: lots}\n", 3, "bad memory size"),
        ("steps:\n  hms:\n    resources: {time: 10}\n", 3, "ambiguous"),
        ("steps:\n  hms:\n    resources: {partition: x}\n", 3, "partition"),
        ("steps:\n  hms:\n    resorces: {}\n", 3, "resorces"),
        ("- a\n", 1, "mapping"),
    ],
)
def test_bad_overrides_say_file_and_line(tmp_path, text, line, says) -> None:
    from hpcflow.spec.validate import load_workflow

    ov = tmp_path / "ov.yaml"
    ov.write_text(text)
    with pytest.raises(InvalidInput) as e:
        load_workflow(_wf(tmp_path), resources=ov)
    msg = str(e.value)
    assert f"{ov}:{line}:" in msg and says in msg, msg


def test_the_written_overrides_file_loads_back(tmp_path) -> None:
    from hpcflow.spec.overrides import overrides_yaml
    from hpcflow.spec.validate import load_workflow

    doc = {"run_id": "r1", "steps": {
        "hms": {"suggest": {"mem": "1600M", "time": "15m", "why": {"mem": "p95 1300M + 20%"}}},
        "ras": {"suggest": {}}}}  # fmt: skip
    ov = tmp_path / "ov.yaml"
    ov.write_text(overrides_yaml(doc))
    wf = load_workflow(_wf(tmp_path), resources=ov).workflow
    assert next(s for s in wf.steps if s.name == "hms").resources.mem == 1600  # MB
    assert "ras" not in ov.read_text()
    empty = overrides_yaml({"run_id": "r1", "steps": {"ras": {"suggest": {}}}})
    ov.write_text(empty)
    load_workflow(_wf(tmp_path), resources=ov)  # nothing measured: a valid, empty file


def test_percentiles_other_than_p95_and_the_memory_cap() -> None:
    peaks = [float(v) for v in range(1, 101)]
    assert suggest(peaks, [], Floors(), margin=0.0, mem_at=50)["mem"] == "100M"
    got = suggest(peaks, [], Floors(), margin=0.0, mem_at=100)
    assert got["why"]["mem"].startswith("max")
    assert suggest([9000.0], [], Floors(), partition_mem_mb=8000)["mem"] == "8000M"
