"""The SSH runner against a real sshd on 127.0.0.1 (no Slurm needed): per-argument quoting,
SFTP writes, host keys verified before anything is sent, clear refusals."""

from __future__ import annotations

from pathlib import Path

import pytest

from hpcflow.errors import RunnerError
from hpcflow.runners.ssh import SSHRunner

from .helpers import free_port, ssh_site

WF = "name: remote\nsteps:\n  - {name: a, run: 'true'}\n"


def _accepted(sshd: dict) -> int:
    return sshd["log"].read_text().count("Accepted publickey")


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


def test_many_files_and_the_tails_of_logs_in_one_command_each(sshd, tmp_path: Path) -> None:
    """read_files (what a refresh reads) and read_tails (a report's stderr tails): one
    remote shell each, missing files None, a big log's last bytes only; same as locally."""
    from hpcflow.runners.base import LocalRunner

    r = SSHRunner("127.0.0.1", port=sshd["port"], key=sshd["key"], known_hosts=sshd["known_hosts"])
    small, big = tmp_path / "r.json", tmp_path / "big.err"
    small.write_text('{"state": "COMPLETED"}\n')
    big.write_text("".join(f"line {i}\n" for i in range(100_000)))
    paths = [str(small), str(big), str(tmp_path / "missing")]
    before = _accepted(sshd)
    files = r.read_files(paths[:1] + paths[2:])
    tails = r.read_tails(paths, 64)
    assert files == {str(small): small.read_bytes(), paths[2]: None}
    assert tails == LocalRunner().read_tails(paths, 64)
    assert tails[str(big)].endswith(b"line 99999\n") and len(tails[str(big)]) == 64
    assert _accepted(sshd) - before <= 1  # one connection, reused
    # within: a log that is a link out of the run directory is not read, there as here
    run = tmp_path / "run"
    (run / "logs").mkdir(parents=True)
    secret = tmp_path / "secret.txt"
    secret.write_text("do not show\n")
    (run / "logs" / "0.err").symlink_to(secret)
    (run / "logs" / "1.err").write_text("own log\n")
    (run / "logs" / "2.err").symlink_to(run / "logs" / "1.err")  # a link inside is fine
    logs = [str(run / "logs" / f"{i}.err") for i in range(3)]
    want = {logs[0]: None, logs[1]: b"own log\n", logs[2]: b"own log\n"}
    assert r.read_tails(logs, 64, within=str(run)) == want
    assert LocalRunner().read_tails(logs, 64, within=str(run)) == want
    assert r.read_tails(logs[:1], 64) == {logs[0]: b"do not show\n"}  # without within
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

    closed = SSHRunner("127.0.0.1", port=free_port(), known_hosts=sshd["known_hosts"])
    with pytest.raises(RunnerError, match="cannot reach 127.0.0.1"):
        closed.run(["true"])
