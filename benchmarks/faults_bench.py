"""The fault table's baselines (docs/faults.md): each node-fault scenario of
tests/test_nodes_slurm.py run the same way without its fault, on the lab's nodes n1-n4.
Prints figures, asserts nothing. The faulted runs are the lab tests themselves
(`pytest -s tests/test_nodes_slurm.py` prints each one's time).

python benchmarks/faults_bench.py [--only NAME]    # needs tests/cluster/slurm-lab up
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent

# name: (elements, element body, pack), as the lab tests run them
SCENARIOS = {
    "node kill": (500, "sleep 1", "{size: 10, parallel: 2}"),
    "black hole": (400, "sleep 1", "null"),
    "preemption": (16, "sleep 8", "null"),
    "daemon restarts": (5000, "true", "{size: 50, parallel: 4}"),
}


def run(name: str, tmp: Path) -> float:
    n, body, pack = SCENARIOS[name]
    site = yaml.safe_load((REPO / "site_configs" / "lab.yaml").read_text())
    site["paths"]["scratch"] = str(tmp / "scratch")
    site["partitions"]["multi"] = {"max_time": "1d", "gpus": 0, "cpus": 4, "mem": "4000M"}
    (tmp / "site.yaml").write_text(yaml.safe_dump(site))
    (tmp / "wf.yaml").write_text(
        f"name: nodes\nsteps:\n  - name: work\n    foreach: {{i: {{range: [0, {n - 1}]}}}}\n"
        f"    pack: {pack}\n    resources: {{partition: multi, cpus: 1, mem: 100M, time: 10m}}\n"
        f"    run: |\n      {body}\n      hostname >> completions\n"
    )
    env = {**os.environ, "HPCFLOW_DB": str(tmp / "t.db")}
    cli = [sys.executable, "-m", "hpcflow"]
    t0 = time.monotonic()
    argv = [*cli, "--site", str(tmp / "site.yaml"), "submit", str(tmp / "wf.yaml"), "--json"]
    sub = subprocess.run(argv, env=env, capture_output=True, text=True, check=True)
    rid = json.loads(sub.stdout)["run_id"]
    subprocess.run([*cli, "watch", rid, "--timeout", "600", "--interval", "2"], env=env,
                   capture_output=True, check=True)  # fmt: skip
    return time.monotonic() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", choices=sorted(SCENARIOS))
    args = ap.parse_args()
    for name in [args.only] if args.only else SCENARIOS:
        with tempfile.TemporaryDirectory() as d:
            print(f"{name:16s} {SCENARIOS[name][0]:5d} elements  without the fault: "
                  f"{run(name, Path(d)):.0f} s", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
