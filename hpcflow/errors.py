"""The one exception tree of hpcflow. The CLI prints the message and exits with ``exit_code``."""

from __future__ import annotations

from dataclasses import dataclass


class HpcflowError(Exception):
    """Root of every error a user can cause or meet; never shown with a traceback."""

    exit_code = 1


@dataclass(frozen=True, order=True)
class Problem:
    """One validation problem, printed as ``FILE:LINE: message``."""

    file: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}"


class InvalidInput(HpcflowError):
    """A workflow, site or campaign file (or a --set value) is invalid. Exit 2."""

    exit_code = 2

    def __init__(self, problems: list[Problem]):
        self.problems = sorted(set(problems))
        super().__init__("\n".join(str(p) for p in self.problems))


class BadUsage(HpcflowError):
    """A command was called with options that do not fit together, or without a site. Exit 2."""

    exit_code = 2


class SlurmError(HpcflowError):
    """Slurm refused or failed a command. Exit 3."""

    exit_code = 3


class SlurmRefused(SlurmError):
    """Slurm answered and said no (a QOS limit, a bad option...). Exit 3."""


class SlurmUnavailable(SlurmError):
    """Slurm did not answer, so what happened is not known yet (a later command settles it)."""


class RunnerError(HpcflowError):
    """A command could not be run at all (missing binary, connection lost)."""

    exit_code = 3


class RunnerTimeout(RunnerError):
    """A command gave no answer within its time limit."""


class NotFound(HpcflowError):
    """A run, step, task or log that does not exist."""

    exit_code = 1


class TrackerError(HpcflowError):
    """The tracker database cannot be used safely."""

    exit_code = 1
