"""Every documented CLI error path: the exit code docs/cli.md gives, a one-line message (or
FILE:LINE lines), never a traceback; with --json one JSON error document on stdout."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from hpcflow.cli import main

GOOD = "name: demo_x\nsteps:\n  - name: a\n    run: echo hi\n"


@pytest.fixture
def env(tmp_path: Path, site_file: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    monkeypatch.delenv("HPCFLOW_SITE", raising=False)
    (tmp_path / "good.yaml").write_text(GOOD)
    (tmp_path / "div.yaml").write_text(GOOD.replace("echo hi", "echo {{ 1/0 }}"))
    (tmp_path / "incl.yaml").write_text(GOOD.replace("echo hi", "\"{% include 'x' %}\""))
    (tmp_path / "bad.yaml").write_text("name: demo\nsteps:\n  - name: a\n    rum: x\n")
    (tmp_path / "nul.yaml").write_bytes(b"name: demo\x00\n")
    (tmp_path / "camp.yaml").write_text("name: c\nworkflow: nope.yaml\n")
    from hpcflow.store.db import open_db

    open_db(tmp_path / "db" / "t.db").dispose()  # a tracker with no runs in it
    return {"tmp": tmp_path, "site": site_file, "db": tmp_path / "db" / "t.db"}


def invoke(env: dict[str, Path], *args: str):
    argv = ["--db", str(env["db"]), *args]
    res = CliRunner().invoke(main, [a.format(**{k: str(v) for k, v in env.items()}) for a in argv])
    return res


# (argv, exit code, fragment of stderr)
PATHS = [
    (["validate", "{tmp}/missing.yaml"], 2, "file not found"),
    (["validate", "{tmp}/bad.yaml"], 2, "unknown key 'rum'"),
    (["validate", "{tmp}/nul.yaml"], 2, "NUL byte"),
    (["validate", "{tmp}"], 2, "is a directory"),
    (["validate", "/dev/zero"], 2, "a character device, not a regular file"),
    (["validate", "{tmp}/div.yaml"], 2, "ZeroDivisionError"),
    (["validate", "{tmp}/incl.yaml"], 2, "not allowed"),
    (["validate", "{tmp}/good.yaml", "--set", "nope=1"], 2, "unknown parameter"),
    (["validate", "{tmp}/good.yaml", "--set", "novalue"], 2, "expected key=value"),
    (["validate", "{tmp}/good.yaml", "--site", "nosuch"], 2, "no site config named"),
    (["validate", "{tmp}/good.yaml", "--max-elements", "0"], 2, "Invalid value"),
    (["render", "{tmp}/good.yaml", "-o", "{tmp}/out"], 2, "no site given"),
    (["render", "{tmp}/good.yaml", "--site", "{site}", "-o", "/proc/nope"], 1, "/proc/nope"),
    (["render", "{tmp}/div.yaml", "--site", "{site}", "-o", "{tmp}/out"], 2, "ZeroDivision"),
    (["submit", "{tmp}/bad.yaml", "--site", "{site}"], 2, "unknown key"),
    (["status", "nope"], 1, "no run 'nope'"),
    (["status", "%"], 1, "no run '%'"),
    (["watch", "nope", "--timeout", "1"], 1, "no run"),
    (["runs", "--state", "BOGUS"], 2, "'BOGUS' is not one of"),
    (["runs", "--since", "yesterday"], 2, "--since"),
    (["logs", "nope", "a"], 1, "no run"),
    (["logs", "nope", "a", "-1"], 2, "No such option"),
    (["cancel", "nope"], 1, "no run"),
    (["retry", "nope"], 1, "no run"),
    (["resolve", "nope", "a", "0"], 1, "no run"),
    (["history", "nope"], 1, "no run"),
    (["clean", "nope"], 1, "no run"),
    (["sites", "show", "nosuch"], 2, "no site config named"),
    (["sites", "check", "nosuch"], 2, "no site config named"),
    (["campaign", "validate", "{tmp}/camp.yaml"], 2, "missing required key"),
    (["campaign", "plan", "{tmp}/missing.yaml"], 2, "file not found"),
    (["campaign", "status", "{tmp}/missing.yaml"], 2, "file not found"),
    (["campaign", "schedule", "{tmp}/camp.yaml"], 2, "missing required key"),
    (["status", "--db", "/proc/x/t.db"], 1, "/proc/x"),
    (["nosuchcommand"], 2, "No such command"),
]


@pytest.mark.parametrize("argv,code,fragment", PATHS, ids=[" ".join(p[0]) for p in PATHS])
def test_error_path(env: dict[str, Path], argv: list[str], code: int, fragment: str) -> None:
    res = invoke(env, *argv)
    assert res.exit_code == code, (res.stdout, res.stderr)
    assert isinstance(res.exception, SystemExit), "an exception escaped (a traceback)"
    assert "Traceback" not in res.stderr + res.stdout
    assert fragment in res.stderr
    lines = [x for x in res.stderr.splitlines() if x.strip()]
    located = all(re.match(r"^\S.*:\d+: ", x) for x in lines)
    usage = lines[0].startswith("Usage:")
    assert len(lines) == 1 or located or usage, res.stderr


JSON_PATHS = [
    (["status", "nope", "--json"], 1),
    (["runs", "--state", "BOGUS", "--json"], 2),
    (["submit", "{tmp}/bad.yaml", "--site", "{site}", "--json"], 2),
    (["history", "nope", "--json"], 1),
    (["campaign", "plan", "{tmp}/missing.yaml", "--json"], 2),
]


@pytest.mark.parametrize("argv,code", JSON_PATHS, ids=[" ".join(p[0]) for p in JSON_PATHS])
def test_json_error_is_one_document(env: dict[str, Path], argv: list[str], code: int) -> None:
    res = invoke(env, *argv)
    assert res.exit_code == code
    doc = json.loads(res.stdout)
    assert doc["exit_code"] == code and doc["error"]


def test_invalid_json_lists_the_problems(env: dict[str, Path]) -> None:
    res = invoke(env, "submit", "{tmp}/bad.yaml", "--site", "{site}", "--json")
    doc = json.loads(res.stdout)
    assert any("unknown key 'rum'" in p for p in doc["problems"])


def test_sites_show_json_is_pure_json(env: dict[str, Path]) -> None:
    res = invoke(env, "sites", "show", "{site}", "--json")
    assert res.exit_code == 0
    doc = json.loads(res.stdout)
    assert doc["site"]["name"] == "lab" and doc["source"].endswith("site.yaml")


def test_every_command_lists_its_exit_codes() -> None:
    import click

    def walk(group: click.Group, prefix: list[str]):
        for name, cmd in group.commands.items():
            if isinstance(cmd, click.Group):
                yield from walk(cmd, prefix + [name])
            else:
                yield prefix + [name]

    for path in walk(main, []):
        res = CliRunner().invoke(main, [*path, "--help"])
        assert res.exit_code == 0
        assert "Exit codes: 0" in res.output, path
        assert "--site" in res.output and "--db" in res.output, path


def test_site_and_db_work_after_the_command(env: dict[str, Path]) -> None:
    res = invoke(env, "validate", "{tmp}/good.yaml", "--site", "{site}")
    assert res.exit_code == 0, res.stderr
    db2 = env["tmp"] / "other.db"
    res = CliRunner().invoke(main, ["runs", "--json", "--db", str(db2)])
    assert res.exit_code == 1 and f"no tracker database at {db2}" in res.stderr  # this one
    assert not db2.exists()  # a read command creates nothing


def _recorded_run(env: dict[str, Path], label: str) -> str:
    from hpcflow.spec.site import load_site
    from hpcflow.spec.validate import load_workflow
    from hpcflow.store.db import open_db
    from hpcflow.tracker.submit import prepare, record_run

    site = load_site(str(env["site"]))
    loaded = load_workflow(env["tmp"] / "good.yaml", [], site)
    rr = prepare(loaded, site, None)  # type: ignore[arg-type]  # max_array_size is set
    env["db"].parent.mkdir(parents=True, exist_ok=True)
    record_run(open_db(env["db"]), rr, loaded, site, label)
    return rr.plan.run_id


def test_markup_in_a_label_is_printed_literally(env: dict[str, Path]) -> None:
    run_id = _recorded_run(env, "[/x] [bold]not bold")
    for argv in (["runs"], ["status", run_id, "--no-refresh"]):
        res = invoke(env, *argv)
        assert res.exit_code == 0, res.stderr
    res = invoke(env, "runs", "--json")
    assert json.loads(res.stdout)["runs"][0]["label"] == "[/x] [bold]not bold"
    res = invoke(env, "runs")
    assert "[/x]" in res.stdout and "[bold]" in res.stdout


def test_run_ids_are_never_cut(env: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    run_id = _recorded_run(env, "a long label " * 5)
    monkeypatch.setenv("COLUMNS", "50")
    res = invoke(env, "runs")
    assert run_id in res.stdout, res.stdout


def test_run_id_prefix_is_literal(env: dict[str, Path]) -> None:
    run_id = _recorded_run(env, "x")
    assert invoke(env, "history", run_id[:8]).exit_code == 0  # a unique prefix works
    for pattern in ("%", "_", "demo%", "dem_", "demo_%", "de%x"):
        res = invoke(env, "history", pattern)
        assert res.exit_code == 1 and "no run" in res.stderr, pattern


@pytest.mark.parametrize("step", ["../../../etc", "a/../../x", "b"])
def test_logs_cannot_leave_the_run_directory(env: dict[str, Path], step: str) -> None:
    run_id = _recorded_run(env, "x")
    res = invoke(env, "logs", run_id, step, "0")
    assert res.exit_code == 1 and "has no step" in res.stderr


def test_completion_offers_run_ids_and_steps(env: dict[str, Path]) -> None:
    from click.shell_completion import ShellComplete

    run_id = _recorded_run(env, "x")
    comp = ShellComplete(main, {}, "hpcflow", "_HPCFLOW_COMPLETE")
    got = comp.get_completions(["--db", str(env["db"]), "logs"], run_id[:6])
    assert run_id in [c.value for c in got]
    got = comp.get_completions(["--db", str(env["db"]), "logs", run_id], "")
    assert [c.value for c in got] == ["a"]
