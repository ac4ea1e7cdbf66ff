"""hpcflow from a "workstation" over SSH: a real sshd on 127.0.0.1, submitting to the lab
cluster through it; host keys verified; clear refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hpcflow.errors import RunnerError
from hpcflow.runners.ssh import SSHRunner

from .conftest import ssh_site
from .test_e2e_slurm import counts, status

pytestmark = pytest.mark.slurm

WF = """\
name: remote
steps:
  - name: a
    foreach: {i: {range: [1, 4]}}
    run: echo "element {{ item.i }} on $(hostname)" | tee out.txt
  - name: b
    after: {a: any}
    run: cat ../../../a/0/*/out.txt > all.txt
"""


def _accepted(sshd: dict) -> int:
    return sshd["log"].read_text().count("Accepted publickey")


def test_submit_and_track_over_ssh(slurm, sshd, hpcflow, tmp_path: Path) -> None:
    site = ssh_site(tmp_path / "site.yaml", tmp_path / "scratch", sshd)
    wf = tmp_path / "wf.yaml"
    wf.write_text(WF)
    before = _accepted(sshd)
    p = hpcflow("--site", str(site), "submit", str(wf), "--json")
    assert p.returncode == 0, p.stderr
    assert _accepted(sshd) == before + 1  # one connection for the whole command
    sub = json.loads(p.stdout)
    w = hpcflow("watch", sub["run_id"], "--timeout", "120", "--interval", "1")
    assert w.returncode == 0, w.stdout + w.stderr
    doc = status(hpcflow, sub["run_id"])
    assert counts(doc) == {"a": {"COMPLETED": 4}, "b": {"COMPLETED": 1}}
    assert doc["steps"]["a"]["tasks"][0]["result"]["exit_code"] == 0  # read over SFTP
    all_txt = Path(sub["run_dir"], "steps/b/0/0/all.txt").read_text()
    assert all_txt.count("element ") == 4
    logs = hpcflow("logs", sub["run_id"], "a", "2")
    assert logs.returncode == 0 and logs.stdout.startswith("element 3 on "), logs.stdout
    hist = json.loads(hpcflow("history", sub["run_id"], "--json", check=True).stdout)
    assert hist["events"][-1]["new_state"] == "COMPLETED"


def test_remote_command_lines_are_quoted_per_argument(sshd, tmp_path: Path) -> None:
    r = SSHRunner("127.0.0.1", port=sshd["port"], key=sshd["key"], known_hosts=sshd["known_hosts"])
    evil = f"a b; touch {tmp_path}/pwned $(id)"
    res = r.run(["printf", "%s|", evil, "two words"])
    assert res.ok and res.stdout == f"{evil}|two words|"
    assert not (tmp_path / "pwned").exists()
    r.write_file(f"{tmp_path}/f.txt", "hello\n", 0o640)
    assert (tmp_path / "f.txt").read_text() == "hello\n"
    assert oct((tmp_path / "f.txt").stat().st_mode & 0o777) == "0o640"
    assert r.read_file(f"{tmp_path}/f.txt") == b"hello\n"
    r.close()


@pytest.mark.parametrize(
    ("known_hosts", "fragment"),
    [
        ("known_hosts_empty", "is not in {kh}; nothing was sent"),
        ("known_hosts_changed", "has CHANGED"),
        ("no_such_file", "does not exist"),
    ],
)
def test_unknown_or_changed_host_key_is_refused(
    sshd, hpcflow, tmp_path: Path, known_hosts: str, fragment: str
) -> None:
    kh = str(sshd["dir"] / known_hosts)
    site = ssh_site(tmp_path / "site.yaml", tmp_path / "scratch", sshd, known_hosts=kh)
    wf = tmp_path / "wf.yaml"
    wf.write_text(WF)
    before = _accepted(sshd)
    p = hpcflow("--site", str(site), "submit", str(wf))
    assert p.returncode != 0
    assert fragment.format(kh=kh) in p.stderr, p.stderr
    if known_hosts != "known_hosts_changed":
        assert f"ssh-keyscan -p {sshd['port']} 127.0.0.1 >> {kh}" in p.stderr
    assert "Traceback" not in p.stderr
    assert _accepted(sshd) == before  # never authenticated: nothing was sent
    assert not (tmp_path / "scratch").exists()


def test_bad_key_and_unreachable_host(sshd, tmp_path: Path) -> None:
    r = SSHRunner(
        "127.0.0.1",
        port=sshd["port"],
        key=str(sshd["dir"] / "otherkey"),
        known_hosts=sshd["known_hosts"],
    )
    with pytest.raises(RunnerError, match="SSH authentication failed for .* with key"):
        r.run(["true"])
    ok = SSHRunner("127.0.0.1", port=sshd["port"], key=sshd["key"], known_hosts=sshd["known_hosts"])
    with pytest.raises(RunnerError, match="sleep 5 on 127.0.0.1: no answer within 1s"):
        ok.run(["sleep", "5"], timeout=1)
    with pytest.raises(RunnerError, match="no-such-command: command not found on 127.0.0.1"):
        ok.run(["no-such-command"])
    from .conftest import _free_port

    closed = SSHRunner("127.0.0.1", port=_free_port(), known_hosts=sshd["known_hosts"])
    with pytest.raises(RunnerError, match="cannot reach 127.0.0.1"):
        closed.run(["true"])
