"""API latency of `hpcflow serve` over a synthetic finished run of 100,000 elements
(tests/synthetic.py): every API endpoint asked N times by one client on 127.0.0.1 against a
real server process; prints p50/p95/max per endpoint. Target (issue 14, docs/benchmarks.md):
p95 under 200 ms for every call.

    .venv/bin/python benchmarks/web_bench.py [--elements 100000] [--n 30]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--elements", type=int, default=100_000)
    ap.add_argument("--n", type=int, default=30)
    a = ap.parse_args()
    from tests.synthetic import finished_run
    from tests.web_server import serving

    with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
        d = Path(tmp)
        db, run = finished_run(d, max(1, (a.elements - 2) // 3))
        log = Path(sqlite_run_dir(db)) / "logs" / "ras" / "0" / "0.err"
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text("".join(f"line {i}\n" for i in range(100_000)))
        paths = [
            "/api/runs",
            f"/api/runs/{run}",
            f"/api/runs/{run}/tasks?step=ras&page=1",
            f"/api/runs/{run}/tasks?step=ras&page=600",
            f"/api/runs/{run}/tasks?state=FAILED",
            f"/api/runs/{run}/logs/ras/0?stream=stderr&tail=200",
            f"/api/runs/{run}/timeline",
            f"/api/runs/{run}/metrics",
            f"/api/runs/{run}/graph",
            f"/api/runs/{run}/history?page=1",
            f"/api/runs/{run}/history?page=300",
            "/api/campaigns",
        ]
        with serving(db, d, "--no-sync") as s:
            print(
                f"{a.elements} elements, {a.n} calls each (the first of timeline and metrics "
                "computes and caches; the cache holds until the run changes)"
            )
            print(f"{'endpoint':<58}{'first ms':>9}{'p50 ms':>8}{'p95 ms':>8}{'max ms':>8}")
            worst = 0.0
            for p in paths:
                times = []
                for _ in range(a.n):
                    t = time.perf_counter()
                    code, _, _ = s.get(p)
                    times.append((time.perf_counter() - t) * 1000)
                    assert code == 200, (p, code)
                first, rest = times[0], sorted(times[1:])
                p50, p95 = rest[len(rest) // 2], rest[min(len(rest) - 1, int(len(rest) * 0.95))]
                worst = max(worst, p95)
                print(f"{p.replace(run, 'RUN'):<58}{first:>9.0f}{p50:>8.0f}{p95:>8.0f}"
                      f"{rest[-1]:>8.0f}")  # fmt: skip
            print(f"worst p95 {worst:.0f} ms (target < 200 ms)")


def sqlite_run_dir(db: Path) -> str:
    import sqlite3

    with sqlite3.connect(db) as c:
        return str(c.execute("SELECT run_dir FROM run").fetchone()[0])


if __name__ == "__main__":
    main()
