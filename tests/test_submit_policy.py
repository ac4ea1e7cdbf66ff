"""sbatch retry policy, with a scripted Runner standing in for sbatch's answers (the real
refusals and timeouts are exercised on the lab in test_faults_slurm.py)."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest

from hpcflow.errors import SlurmError
from hpcflow.runners.base import Result
from hpcflow.slurm import client as submit_mod
from hpcflow.slurm.client import JobSpec, SlurmClient
from hpcflow.spec.site import load_site

TEMP = "sbatch: error: Batch job submission failed: Socket timed out on send/recv operation"


class Scripted:
    def __init__(self, answers: list[tuple[int, str, str]]):
        self.answers = answers
        self.calls: list[list[str]] = []

    def run(self, argv: list[str], **_: object) -> Result:
        self.calls.append(argv)
        rc, out, err = self.answers.pop(0)
        return Result(argv, rc, out, err)


@pytest.fixture
def site(repo: Path):
    return load_site(str(repo / "site_configs/lab.yaml"))


@pytest.fixture(autouse=True)
def no_sleep(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    slept: list[float] = []
    monkeypatch.setattr(submit_mod.time, "sleep", slept.append)
    return slept


NOW = datetime(2026, 11, 22, tzinfo=timezone.utc)
JOB = JobSpec(script="x.sh", tasks="x.tasks", name="n", output="x.log")


def sbatch(r: Scripted, site) -> str:
    return SlurmClient.for_site(r, site).sbatch(JOB, NOW)  # type: ignore[arg-type]


def test_temporary_errors_back_off_then_succeed(site, no_sleep: list[float]) -> None:
    r = Scripted([(1, "", TEMP), (1, "", TEMP), (0, "4242\n", "")])
    assert sbatch(r, site) == "4242"
    assert len(r.calls) == 3
    assert 1 <= no_sleep[0] <= 2 and 2 <= no_sleep[1] <= 4  # exponential, with jitter


def test_limit_refusal_is_not_retried(site, no_sleep: list[float]) -> None:
    r = Scripted([(1, "", "sbatch: error: QOSMaxSubmitJobPerUserLimit")])
    with pytest.raises(SlurmError, match="QOSMaxSubmitJobPerUserLimit") as e:
        sbatch(r, site)
    assert "command: sbatch --parsable --job-name=n" in str(e.value)
    assert len(r.calls) == 1 and no_sleep == []
    assert r.calls[0] == JOB.argv() and r.calls[0][-2:] == ["x.sh", "x.tasks"]


def test_temporary_errors_give_up_after_five(site) -> None:
    r = Scripted([(1, "", TEMP)] * 5)
    with pytest.raises(SlurmError, match="Socket timed out"):
        sbatch(r, site)
    assert len(r.calls) == 5
