"""Node names reach a command (scontrol update ExcNodeList=..., sbatch --exclude=...): they
come from sacct's NodeList, Slurm's own output, and are still checked before they are used
(docs/security.md). And the answer of the update, as the lab's Slurm 22.05 printed it."""

from __future__ import annotations

from pathlib import Path

import pytest

from hpcflow.errors import SlurmError
from hpcflow.slurm.nodes import exclude_argv, exclude_flag, excluded_pending, node_list

CAP = Path(__file__).parent / "captured"


@pytest.mark.parametrize(
    "bad", ["n1;reboot", "n1 n2", "$(id)", "-n1", "", "n1\nn2", "a" * 200, "n1,n2", "../n1"]
)
def test_a_node_name_slurm_would_not_print_is_refused(bad: str) -> None:
    with pytest.raises(SlurmError, match="not a node name"):
        node_list({"n1", bad})
    with pytest.raises(SlurmError):
        exclude_argv("15909", {bad})


def test_exclude_argv_is_one_word_per_argument() -> None:
    assert exclude_argv("15909", {"n3", "n1", "gpu[01-02]"}) == [
        "scontrol", "update", "JobId=15909", "ExcNodeList=gpu[01-02],n1,n3"]  # fmt: skip
    with pytest.raises(SlurmError, match="not a Slurm job id"):
        exclude_argv("15909 ExcNodeList=x", {"n3"})
    with pytest.raises(SlurmError, match="no node"):  # it would clear the job's exclusions
        exclude_argv("15909", set())


def test_the_update_reached_the_pending_tasks() -> None:
    assert excluded_pending((CAP / "scontrol-exclude.txt").read_text())
    assert not excluded_pending("15909: Job has already finished\n")
    assert not excluded_pending("")


def test_exclude_flag_widens_what_the_job_had() -> None:
    assert exclude_flag(["--mem=100M"], frozenset({"n3"})) == ["--mem=100M", "--exclude=n3"]
    assert exclude_flag(["--exclude=n1", "--qos=x"], frozenset({"n3"})) == [
        "--qos=x", "--exclude=n1,n3"]  # fmt: skip
    assert exclude_flag(["--qos=x"], frozenset()) == ["--qos=x"]
