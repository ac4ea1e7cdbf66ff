"""Right-sizing across campaign batches (pure): later batches ask for what earlier ones
used, never below what any element needed, never above the partition."""

from __future__ import annotations

import pytest

from hpcflow.campaign.rightsize import Request, right_sized
from hpcflow.campaign.spec import RightSize
from hpcflow.tracker.efficiency import ElementUse, Floors, StepEfficiency


def used(n: int, peak: float, elapsed: float, state: str = "COMPLETED") -> StepEfficiency:
    return StepEfficiency([ElementUse(state, elapsed_s=elapsed, peak_mb=peak) for _ in range(n)])


SPEC = RightSize(min_samples=10)


def test_an_over_requesting_step_asks_less_next_time() -> None:
    ov, sized, notes = right_sized(SPEC, {"hms": used(20, 100, 60)}, {},
                                   {"hms": Request(1024, 3600)})  # fmt: skip
    assert sized == {"hms": {"mem": "200M", "time": "2m"}}  # 100 x 1.2 -> 200M; 72 s -> 2m
    assert ov.steps["hms"].resources.mem == 200  # MB
    assert notes == ["right_size: hms: mem 1024M -> 200M (p95 100M + 20%), time 3600s -> 2m "
                     "(p95 60s + 20%); from 20 completed elements"]  # fmt: skip


def test_too_few_samples_change_nothing() -> None:
    ov, sized, notes = right_sized(SPEC, {"hms": used(9, 100, 60)}, {},
                                   {"hms": Request(1024, 3600)})  # fmt: skip
    assert (ov.steps, sized, notes) == ({}, {}, [])


def test_never_below_a_request_that_ran_out_of_memory() -> None:
    """A batch sized to 200M ran out of memory: whatever the completed elements measured,
    the next batch asks for more than 200M, and never goes back."""
    floors = {"hms": Floors(mem_mb=200, oom=3)}
    _, sized, notes = right_sized(SPEC, {"hms": used(20, 100, 60)}, floors,
                                  {"hms": Request(200, 120)})  # fmt: skip
    assert sized["hms"]["mem"] == "300M"  # 200 x 1.2 = 240 -> 300M
    assert "ran out of memory at 200M: never lower" in notes[0]


def test_the_partition_limits_cap_and_off_switches() -> None:
    req = {"ras": Request(1024, 600, max_mem_mb=4000, max_time_s=3600)}
    _, sized, _ = right_sized(SPEC, {"ras": used(20, 9000, 7200)}, {}, req)
    assert sized == {"ras": {"mem": "4000M", "time": "1h"}}
    _, sized, _ = right_sized(RightSize(min_samples=10, time=None), {"ras": used(20, 100, 60)},
                              {}, req)  # fmt: skip
    assert sized == {"ras": {"mem": "200M"}}


def test_unchanged_requests_are_not_overridden() -> None:
    _, sized, notes = right_sized(SPEC, {"hms": used(20, 100, 100)}, {},
                                  {"hms": Request(200, 120)})  # fmt: skip
    assert sized == {} and notes == []


@pytest.mark.parametrize("margin", ["20", "x%", "2000%"])
def test_a_bad_margin_is_refused(margin) -> None:
    with pytest.raises(ValueError, match="margin"):
        RightSize(margin=margin)
