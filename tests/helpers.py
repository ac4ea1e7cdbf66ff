"""Helpers shared by test modules (import from here, not from other test modules)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Measured:
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    max_rss_mb: float


def run_measured(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> Measured:
    """Run ``python -m hpcflow ARGS`` and measure its wall time and peak RSS (VmHWM of the
    process itself: wait4's maxrss would include the forking test process)."""
    out, err, peak = cwd / "m.stdout", cwd / "m.stderr", cwd / "m.peak"
    with out.open("w") as fo, err.open("w") as fe:
        t0 = time.monotonic()
        p = subprocess.Popen(
            [sys.executable, "-c", _PEAK, *args],
            stdout=fo,
            stderr=fe,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {}), "HPCFLOW_TEST_PEAK": str(peak)},
            cwd=cwd,
        )
        p.wait()
        seconds = time.monotonic() - t0
    return Measured(
        p.returncode, out.read_text(), err.read_text(), seconds, int(peak.read_text()) / 1024
    )


_PEAK = (
    "import atexit, os, runpy, sys\n"
    "def _peak():\n"
    "    for line in open('/proc/self/status'):\n"
    "        if line.startswith('VmHWM:'):\n"
    "            open(os.environ['HPCFLOW_TEST_PEAK'], 'w').write(line.split()[1])\n"
    "atexit.register(_peak)\n"
    "sys.argv = ['hpcflow'] + sys.argv[1:]\n"
    "runpy.run_module('hpcflow', run_name='__main__')\n"
)
