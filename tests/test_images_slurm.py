"""Remote images on the lab cluster: one pull job per run that the container steps depend on,
a shared cache filled by atomic rename (two runs racing for the same image), and registry
credentials that reach the pull command and nothing else.

Apptainer cannot be installed on these machines, so `apptainer` here is a recording stand-in
(tests/fake_apptainer.sh): `pull` writes a file, `exec` runs the command with --cleanenv
semantics. What is real and under test is hpcflow's side: the Slurm jobs, their dependencies,
the cache, and where the secret goes. Apptainer's own command line is pinned against its
documented CLI in test_containers.py / test_render.py.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .helpers import REPO, counts, lab_site, status

pytestmark = pytest.mark.slurm

IMAGE = "docker://registry.example.org/ffrd/hms-runner:v1.0.3"
WF = f"""\
name: pulled
containers:
  hms: {{image: "{IMAGE}"}}
steps:
  - name: host
    run: env > host-env.txt
  - name: hms
    container: hms
    foreach: {{event: {{range: [1, 20]}}}}
    run: echo "event $HPCFLOW_ITEM_event" > out.txt
"""


def _setup(tmp_path: Path, **containers: object) -> tuple[Path, Path, dict[str, str]]:
    site = lab_site(
        tmp_path / "site.yaml",
        tmp_path / "scratch",
        limits={"max_array_size": 1001},
        containers={"runtime": "apptainer", "image_cache": str(tmp_path / "cache"), **containers},
    )
    wf = tmp_path / "wf.yaml"
    wf.write_text(WF)
    fake = tmp_path / "bin"
    fake.mkdir()
    shutil.copy(REPO / "tests/fake_apptainer.sh", fake / "apptainer")
    (fake / "apptainer").chmod(0o755)
    env = {
        "PATH": f"{fake}:{os.environ['PATH']}",
        "FAKE_APPTAINER_LOG": str(tmp_path / "apptainer.log"),
    }
    return site, wf, env


def _cli(tmp_path: Path, env: dict[str, str], *args: str) -> subprocess.Popen:
    full = dict(os.environ, HPCFLOW_DB=str(tmp_path / "db" / "tracker.db"), **env)
    return subprocess.Popen(
        [sys.executable, "-m", "hpcflow", *args],
        env=full,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _sha(s: str) -> str:
    return hashlib.sha256(s.encode()).hexdigest()[:16]


def _assert_nowhere(secret: str, tmp_path: Path, job_ids: list[str], outputs: list[str]) -> None:
    """The secret is in no file under the test's directory (run dirs, logs, scripts, image
    cache, database and its WAL), in no hpcflow output, and not in what Slurm shows."""
    needle = secret.encode()
    for p in tmp_path.rglob("*"):
        if p.is_file() and not p.is_symlink():
            assert needle not in p.read_bytes(), f"secret found in {p}"
    for text in outputs:
        assert secret not in text
    show = subprocess.run(
        ["scontrol", "show", "job", "-dd", *job_ids[:1]], capture_output=True, text=True
    )
    shown = show.stdout
    for jid in job_ids:
        shown += subprocess.run(
            ["scontrol", "show", "job", "-dd", jid], capture_output=True, text=True
        ).stdout
    assert "pulled" in shown  # the jobs were still there to look at
    assert secret not in shown
    acct = subprocess.run(
        ["sacct", "-P", "-l", "-j", ",".join(job_ids)], capture_output=True, text=True
    ).stdout
    assert secret not in acct


def test_pull_job_cache_race_and_secret_from_environment(slurm, tmp_path: Path) -> None:
    site, wf, env = _setup(tmp_path)
    secret = "s3cr3t-" + secrets.token_hex(12)
    env.update(APPTAINER_DOCKER_USERNAME="alice", APPTAINER_DOCKER_PASSWORD=secret)
    # two runs submitted at the same time race to fill the same cache entry
    procs = [_cli(tmp_path, env, "--site", str(site), "submit", str(wf), "--json") for _ in "ab"]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    subs = [json.loads(o) for o, _ in outs]
    job_ids = [j["slurm_job_id"] for s in subs for j in s["jobs"]]
    for s in subs:
        assert [(j["step"], j["array"]) for j in s["jobs"]] == [
            ("hpcflow-pull", None),
            ("host", None),
            ("hms", "0-19"),
        ]
    texts = [o + e for o, e in outs]
    for s in subs:
        w = _cli(tmp_path, env, "watch", s["run_id"], "--timeout", "180", "--interval", "1")
        o, e = w.communicate(timeout=200)
        assert w.returncode == 0, o + e
        texts.append(o + e)
        p = _cli(tmp_path, env, "status", s["run_id"], "--json", "--tasks")
        o, e = p.communicate(timeout=60)
        doc = json.loads(o)
        texts.append(o + e)
        assert counts(doc) == {
            "hpcflow-pull": {"COMPLETED": 1},
            "host": {"COMPLETED": 1},
            "hms": {"COMPLETED": 20},
        }
        assert doc["steps"]["hpcflow-pull"]["role"] == "image pull"
    log = (tmp_path / "apptainer.log").read_text().splitlines()
    pulls = [ln for ln in log if ln.startswith("pull ")]
    execs = [ln for ln in log if ln.startswith("exec ")]
    # once per run at most (never per element), with the credentials; 40 elements ran
    assert 1 <= len(pulls) <= 2, log
    assert all(ln == f"pull {IMAGE} user=alice pw={_sha(secret)}" for ln in pulls), log
    assert len(execs) == 40
    cached = list((tmp_path / "cache").iterdir())
    assert len(cached) == 1 and cached[0].suffix == ".sif", cached  # no temporary left over
    assert cached[0].read_text() == f"fake sif of {IMAGE}\n"
    assert {ln.split()[1] for ln in execs} == {str(cached[0])}
    # regular jobs never see the credentials (sbatch passes its environment to every job)
    for s in subs:
        host_env = Path(s["run_dir"], "steps/host/0/0/host-env.txt").read_text()
        assert "APPTAINER_DOCKER" not in host_env
    # a third run finds the image in the cache and pulls nothing
    p = _cli(tmp_path, env, "--site", str(site), "submit", str(wf), "--json")
    o, e = p.communicate(timeout=120)
    third = json.loads(o)
    w = _cli(tmp_path, env, "watch", third["run_id"], "--timeout", "180", "--interval", "1")
    assert w.wait(timeout=200) == 0
    log = (tmp_path / "apptainer.log").read_text().splitlines()
    assert len([ln for ln in log if ln.startswith("pull ")]) == len(pulls)
    pull_log = Path(third["run_dir"], "logs/hpcflow-pull").glob("slurm-*.out")
    assert "cached at" in "".join(p.read_text() for p in pull_log)
    _assert_nowhere(secret, tmp_path, job_ids + [j["slurm_job_id"] for j in third["jobs"]], texts)


def test_secret_from_credentials_file(slurm, tmp_path: Path) -> None:
    creds = tmp_path / "registry.cred"
    secret = "f1le-" + secrets.token_hex(12)
    creds.write_text(f"APPTAINER_DOCKER_USERNAME=bob\nAPPTAINER_DOCKER_PASSWORD={secret}\n")
    creds.chmod(0o644)
    site, wf, env = _setup(tmp_path, credentials=str(creds))
    p = _cli(tmp_path, env, "--site", str(site), "submit", str(wf), "--json")
    o, e = p.communicate(timeout=120)
    assert p.returncode != 0 and f"chmod 600 {creds}" in e, o + e
    assert not (tmp_path / "scratch").exists()  # refused before anything was written
    runs = _cli(tmp_path, env, "runs", "--json").communicate(timeout=60)[0]
    assert json.loads(runs)["runs"] == []
    creds.chmod(0o600)
    p = _cli(tmp_path, env, "--site", str(site), "submit", str(wf), "--json")
    o, e = p.communicate(timeout=120)
    assert p.returncode == 0, e
    sub = json.loads(o)
    w = _cli(tmp_path, env, "watch", sub["run_id"], "--timeout", "180", "--interval", "1")
    wo, we = w.communicate(timeout=200)
    assert w.returncode == 0, wo + we
    log = (tmp_path / "apptainer.log").read_text().splitlines()
    assert [ln for ln in log if ln.startswith("pull ")] == [
        f"pull {IMAGE} user=bob pw={_sha(secret)}"
    ]
    ids = [j["slurm_job_id"] for j in sub["jobs"]]
    # the credentials file itself is the one place the secret may be
    creds.unlink()
    _assert_nowhere(secret, tmp_path, ids, [o, e, wo, we])


def test_pull_on_the_login_node(slurm, hpcflow, tmp_path: Path) -> None:
    site, wf, env = _setup(tmp_path, pull="login")
    sub = json.loads(
        hpcflow("--site", str(site), "submit", str(wf), "--json", check=True, extra_env=env).stdout
    )
    assert [j["step"] for j in sub["jobs"]] == ["host", "hms"]
    log = (tmp_path / "apptainer.log").read_text().splitlines()
    assert [ln for ln in log if ln.startswith("pull ")] == [f"pull {IMAGE} user= pw={_sha('')}"]
    w = hpcflow("watch", sub["run_id"], "--timeout", "180", "--interval", "1", extra_env=env)
    assert w.returncode == 0, w.stdout + w.stderr
    assert counts(status(hpcflow, sub["run_id"])) == {
        "host": {"COMPLETED": 1},
        "hms": {"COMPLETED": 20},
    }


def test_failed_pull_then_retry_and_cleanup(slurm, hpcflow, tmp_path: Path) -> None:
    """A pull that fails takes the container steps down (UPSTREAM_FAILED) but not the host
    step; the on_success cleanup waits. `hpcflow retry` resubmits the pull, the container steps
    and the cleanup, which then removes the run directory."""
    site, wf, env = _setup(tmp_path)
    wf.write_text(WF.replace("steps:", "cleanup: on_success\nsteps:"))
    env["FAKE_APPTAINER_FAIL_ONCE"] = str(tmp_path / "failed-once")
    sub = json.loads(
        hpcflow("--site", str(site), "submit", str(wf), "--json", check=True, extra_env=env).stdout
    )
    w = hpcflow("watch", sub["run_id"], "--timeout", "180", "--interval", "1", extra_env=env)
    assert w.returncode == 1, w.stdout + w.stderr
    assert counts(status(hpcflow, sub["run_id"])) == {
        "hpcflow-pull": {"FAILED": 1},
        "host": {"COMPLETED": 1},
        "hms": {"UPSTREAM_FAILED": 20},
        "hpcflow-cleanup": {"UPSTREAM_FAILED": 1},
    }
    err = "".join(p.read_text() for p in Path(sub["run_dir"], "logs/hpcflow-pull").glob("*.out"))
    assert "unauthorized" in err
    r = hpcflow("retry", sub["run_id"], extra_env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    w = hpcflow("watch", sub["run_id"], "--timeout", "180", "--interval", "1", extra_env=env)
    assert w.returncode == 0, w.stdout + w.stderr
    assert counts(status(hpcflow, sub["run_id"])) == {
        "hpcflow-pull": {"COMPLETED": 1},
        "host": {"COMPLETED": 1},
        "hms": {"COMPLETED": 20},
        "hpcflow-cleanup": {"COMPLETED": 1},
    }
    assert not Path(sub["run_dir"]).exists()
