"""Steps in real Charliecloud containers (ch-run) on the lab cluster."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from .helpers import counts, lab_site, status

pytestmark = pytest.mark.slurm


def busybox_image(root: Path) -> Path:
    """A minimal image directory: static busybox, its applets, a marker only the image has."""
    busybox = shutil.which("busybox")
    assert busybox, "busybox-static is installed by tests/cluster/slurm-lab"
    for d in ("bin", "dev", "proc", "sys", "tmp", "etc", "home", "root", "mnt", "run"):
        (root / d).mkdir(parents=True, exist_ok=True)
    shutil.copy(busybox, root / "bin/busybox")
    applets = subprocess.run([busybox, "--list"], capture_output=True, text=True).stdout.split()
    for a in applets:
        if not (root / "bin" / a).exists():
            (root / "bin" / a).symlink_to("busybox")
    (root / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (root / "etc/group").write_text("root:x:0:\n")
    (root / "IMAGE-MARKER").write_text("inside\n")
    return root


WF = """\
name: ch
containers:
  base: {image: img}
defaults: {container: base}
steps:
  - name: hms
    foreach: {event: {range: [1, 3]}}
    env: {CC_EVENT_IDENTIFIER: '{{ item.event }}'}
    run: |
      cat /IMAGE-MARKER > where
      env | sort > env.txt
      echo "$CC_EVENT_IDENTIFIER,$(( {{ item.event | raw }} * 100 ))" > peaks.csv
  - name: ras
    after: {hms: each}
    foreach:
      event: {range: [1, 3]}
      unit: {values: [A, B]}
    run: |
      pwd > cwd
      echo "{{ item.unit }} $(cat {{ upstream.hms.task_dir }}/peaks.csv)" > result
"""


def test_charliecloud_steps_run_in_the_image(slurm, hpcflow, tmp_path: Path) -> None:
    site = lab_site(tmp_path / "site.yaml", tmp_path / "scratch", limits={"max_array_size": 1001})
    doc = yaml.safe_load(site.read_text())
    assert doc["containers"]["runtime"] == "charliecloud"
    busybox_image(tmp_path / "img")
    wf = tmp_path / "wf.yaml"
    wf.write_text(WF)
    env = dict(
        os.environ,
        HPCFLOW_DB=str(tmp_path / "db" / "tracker.db"),
        LEAKY_HOST_VARIABLE="should-not-be-inside",
    )
    env.pop("USER", None)  # ch-run refuses to start without $USER; the job script copes
    p = subprocess.run(
        [sys.executable, "-m", "hpcflow", "--site", str(site), "submit", str(wf), "--json"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert p.returncode == 0, p.stderr
    sub = json.loads(p.stdout)
    w = hpcflow("watch", sub["run_id"], "--timeout", "180", "--interval", "1")
    assert w.returncode == 0, w.stdout + w.stderr
    doc = status(hpcflow, sub["run_id"])
    assert counts(doc) == {"hms": {"COMPLETED": 3}, "ras": {"COMPLETED": 6}}
    run_dir = Path(sub["run_dir"])
    for i in range(3):
        d = run_dir / "steps/hms/0" / str(i)
        assert (d / "where").read_text() == "inside\n"
        assert (d / "peaks.csv").read_text() == f"{i + 1},{(i + 1) * 100}\n"
        inside = dict(
            line.split("=", 1) for line in (d / "env.txt").read_text().splitlines() if "=" in line
        )
        assert "LEAKY_HOST_VARIABLE" not in inside
        assert inside["HPCFLOW_INDEX"] == str(i) and inside["CC_EVENT_IDENTIFIER"] == str(i + 1)
        assert not any(k.startswith("SLURM_") for k in inside)
    for t in doc["steps"]["ras"]["tasks"]:
        d = run_dir / "steps/ras/0" / str(t["index"])
        e, u = t["item"]["event"], t["item"]["unit"]
        assert (d / "result").read_text() == f"{u} {e},{e * 100}\n"
        assert (d / "cwd").read_text().strip() == str(d)


PLUGIN = """#!/bin/sh
# Cloud Compute plugin stand-in: no arguments; event and payload from the environment
set -e
payload="$FSB_ROOT_PATH/$CC_PAYLOAD_ID/payload"
echo "event=$CC_EVENT_IDENTIFIER number=$CC_EVENT_NUMBER store=$CC_STORE_TYPE" > /sim/model/run.txt
cat "$payload" > /sim/model/payload-copy
mkdir -p "$FSB_ROOT_PATH/out/$CC_EVENT_IDENTIFIER"
cp /sim/model/run.txt "$FSB_ROOT_PATH/out/$CC_EVENT_IDENTIFIER/run.txt"
"""

FFRD_WF = """\
name: ffrd
containers:
  plug: {image: img}
steps:
  - name: hms
    container: plug
    foreach: {event: {range: [1, 3]}}
    ffrd: {payload: payload.json, writable: [/sim/model]}
    run: /app/plugin
  - name: conform
    container: plug
    after: {hms: each}
    foreach: {event: {range: [1, 3]}}
    ffrd: {config: action.json}
    run: /app/action
  - name: report
    container: plug
    after: {hms: any}
    ffrd: {config: action.json, config_via: stdin, event: 42}
    run: /app/stdin-action
"""


def test_ffrd_plugins(slurm, hpcflow, tmp_path: Path) -> None:
    """Cloud Compute style plugins in real containers: CC_* variables, the payload at
    $FSB_ROOT_PATH/$CC_PAYLOAD_ID/payload on the run's scratch, a writable path bound into a
    read-only image, and JSON configs given as argv[1] and on stdin with {ENV::X} filled in."""
    site = lab_site(tmp_path / "site.yaml", tmp_path / "scratch", limits={"max_array_size": 1001})
    img = busybox_image(tmp_path / "img")
    (img / "sim/model").mkdir(parents=True)
    (img / "app").mkdir()
    scripts = {
        "plugin": PLUGIN,
        "action": '#!/bin/sh\nprintf "%s" "$1" > config-seen.json\n',
        "stdin-action": "#!/bin/sh\ncat > config-seen.json\n",
    }
    for name, text in scripts.items():
        (img / "app" / name).write_text(text)
        (img / "app" / name).chmod(0o755)
    (tmp_path / "payload.json").write_text('{"model": "trinity"}\n')
    (tmp_path / "action.json").write_text(
        '{"event": "{ENV::CC_EVENT_IDENTIFIER}", "store": "{ENV::FSB_ROOT_PATH}"}\n'
    )
    wf = tmp_path / "wf.yaml"
    wf.write_text(FFRD_WF)
    args = ["--site", str(site), "submit", str(wf), "--json"]
    sub = json.loads(hpcflow(*args, check=True).stdout)
    w = hpcflow("watch", sub["run_id"], "--timeout", "180", "--interval", "1")
    assert w.returncode == 0, w.stdout + w.stderr
    run_dir = Path(sub["run_dir"])
    assert (run_dir / "ffrd/hms/payload").read_text() == '{"model": "trinity"}\n'
    for i in range(3):
        e = i + 1
        model = run_dir / "steps/hms/0" / str(i) / ".ffrd/0"
        assert (model / "run.txt").read_text() == f"event={e} number={e} store=FS\n"
        assert (model / "payload-copy").read_text() == '{"model": "trinity"}\n'
        assert (run_dir / f"ffrd/out/{e}/run.txt").exists()
        seen = json.loads((run_dir / "steps/conform/0" / str(i) / "config-seen.json").read_text())
        assert seen == {"event": str(e), "store": str(run_dir / "ffrd")}
    seen = json.loads((run_dir / "steps/report/0/0/config-seen.json").read_text())
    assert seen["event"] == "42"
