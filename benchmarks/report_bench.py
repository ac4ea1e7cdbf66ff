"""What seeing a big run costs: `hpcflow report` and `hpcflow efficiency` on a synthetic
finished run (tests/synthetic.py: hpcflow's own submit path, then the states, times, records,
usage and history a run that ran has), and the report opened in Debian's headless Chromium.

    .venv/bin/python benchmarks/report_bench.py [--elements 100000]

Prints, in one run: the time to write the report and its size, the time Chromium takes to
load it (to the load event), and `efficiency --json`, each against `python -c pass` (the
fixed cost of any command). Targets (docs/benchmarks.md): the file under 5 MB, Chromium under
2 s at 100,000 elements.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def timed(argv: list[str], env: dict[str, str], cwd: Path, n: int = 3) -> float:
    best = float("inf")
    for _ in range(n):
        t = time.perf_counter()
        subprocess.run(argv, env=env, cwd=cwd, check=True, capture_output=True)
        best = min(best, time.perf_counter() - t)
    return best


def chromium_load_s(path: Path) -> tuple[float, int, int]:
    """(seconds to the load event, console errors, requests other than the file)."""
    from tests.browser import opened

    with opened(path) as b:
        return b.load_s, len(b.console_errors), len(b.requests) - 1


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--elements", type=int, default=100_000)
    a = ap.parse_args()
    from tests.synthetic import finished_run

    with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
        d = Path(tmp)
        t = time.perf_counter()
        db, run_id = finished_run(d, max(1, (a.elements - 2) // 3))
        built = time.perf_counter() - t
        env = {**os.environ, "HPCFLOW_DB": str(db), "PYTHONPATH": str(REPO)}
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        py = [sys.executable]
        out = d / "report.html"
        base = timed([*py, "-c", "pass"], env, d)
        rep = timed([*py, "-m", "hpcflow", "report", run_id, "-o", str(out)], env, d)
        eff = timed([*py, "-m", "hpcflow", "efficiency", run_id, "--json"], env, d)
        load, errors, requests = chromium_load_s(out)
        size = out.stat().st_size
        print(f"synthetic finished run: {a.elements} elements (built in {built:.1f} s)")
        print(f"{'what':<34}{'seconds':>9}{'x python -c pass':>18}")
        print(f"{'python -c pass':<34}{base:>9.3f}{1.0:>18.1f}")
        print(f"{'hpcflow report -o report.html':<34}{rep:>9.3f}{rep / base:>18.1f}")
        print(f"{'hpcflow efficiency --json':<34}{eff:>9.3f}{eff / base:>18.1f}")
        print(f"{'chromium: load event':<34}{load:>9.3f}")
        print(
            f"report size {size / 1024:.0f} KiB (target < 5 MB); chromium load {load:.2f} s "
            f"(target < 2 s); console errors {errors}; requests besides the file {requests}"
        )


if __name__ == "__main__":
    main()
