"""Crontab lines (docs/security.md, docs/campaigns.md#scheduling): everything written into
one is refused when it holds a newline or another control character (paths, environment
values, the expression), fields out of range are refused with the field named, and the rest
of the user's crontab is written back exactly as it was."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from hpcflow.campaign.schedule import add_entry, check_cron, cron_line, remove_entry
from hpcflow.cli import main
from hpcflow.errors import HpcflowError


@pytest.mark.parametrize(
    ("expr", "says"),
    [
        ("60 * * * *", "minute 60 is out of range 0-59"),
        ("* 25 * * *", "hour 25 is out of range 0-23"),
        ("* * 32 * *", "day of month 32 is out of range 1-31"),
        ("* * 0 * *", "day of month 0 is out of range 1-31"),
        ("* * * 13 *", "month 13 is out of range 1-12"),
        ("* * * * 8", "day of week 8 is out of range 0-7"),
        ("60 25 32 13 8", "minute 60"),
        ("*/0 * * * *", "minute step '0' must be 1-59"),
        ("*/ * * * *", "minute step ''"),
        ("5-1 * * * *", "minute range '5-1' runs backwards"),
        ("5/2 * * * *", "a step needs * or a range"),
        ("* * * foo *", "month 'foo' is not a number"),
        ("*/15 * * * *\n* * * * * id", "control character"),
        ("*/15 * * * *\r", "control character"),
        ("@reboot", "not a crontab schedule"),
        ("* * * * * rm", "not a crontab schedule"),
    ],
)
def test_bad_schedules_are_refused_with_the_field(expr: str, says: str) -> None:
    with pytest.raises(HpcflowError, match=None) as e:
        check_cron(expr)
    assert says in str(e.value), str(e.value)


@pytest.mark.parametrize(
    "expr", ["*/15 * * * *", "0 2 * * 1-5", "0,30 8-18/2 1 jan-mar sun", "@hourly", "0 0 1 12 7"]
)
def test_good_schedules_pass(expr: str) -> None:
    assert check_cron(expr) == " ".join(expr.split())


@pytest.mark.parametrize(
    ("env", "argv", "name", "says"),
    [
        ({"SLURM_CONF": "/etc/slurm.conf\n* * * * * id"}, ["hpcflow"], "c", "$SLURM_CONF"),
        ({}, ["hpcflow", "/home/me/camp\n* * * * * id #.yaml"], "c", "a path"),
        ({}, ["hpcflow", "/x/\x1bcamp.yaml"], "c", "a path"),
        ({}, ["hpcflow", "/x/c\u2028amp.yaml"], "c", "a path"),
        ({}, ["hpcflow"], "c\nd", "the campaign name"),
    ],
)
def test_control_characters_never_reach_a_crontab_line(env, argv, name, says) -> None:
    with pytest.raises(HpcflowError, match="newline or another control character") as e:
        cron_line("*/5 * * * *", argv, {"PATH": "/usr/bin", **env}, name)
    assert says in str(e.value)


def test_a_percent_and_quotes_stay_one_word() -> None:
    line = cron_line("@hourly", ["hpcflow", "/x/50% 'a'.yaml"], {"PATH": "/bin"}, "c")
    # cron turns an unescaped % into a newline; sh reads the rest as one word
    assert "\\%" in line and line.count("\n") == 0
    cmd = line.split(" ", 1)[1].split(" # hpcflow-campaign:")[0].replace("\\%", "%")
    out = subprocess.run(["sh", "-c", f"printf '%s\\n' {cmd.split(' ', 1)[1]}"],
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert out.splitlines()[1] == "/x/50% 'a'.yaml"


def test_the_rest_of_the_crontab_is_written_back_as_it_was() -> None:
    mine = "MAILTO=me\n# a note with \u2028 inside and \x0b too\n0 1 * * * backup\n"
    line = cron_line("@hourly", ["hpcflow", "tick"], {"PATH": "/bin"}, "c")
    added = add_entry(mine, line, "c")
    assert added == mine + line + "\n"
    assert remove_entry(added, "c") == mine


def test_schedule_refuses_a_campaign_path_with_a_newline(tmp_path: Path, monkeypatch) -> None:
    repo = Path(__file__).resolve().parent.parent
    d = tmp_path / "camp\n* * * * * touch pwned #"
    d.mkdir()
    (d / "workflow.yaml").write_text((repo / "examples/campaign/workflow.yaml").read_text())
    (d / "c.yaml").write_text((repo / "examples/campaign/campaign.yaml").read_text())
    tab = tmp_path / "crontab"
    monkeypatch.setenv("HPCFLOW_CRONTAB_FILE", str(tab))
    res = CliRunner().invoke(main, ["--db", str(tmp_path / "t.db"), "campaign", "schedule",
                                    str(d / "c.yaml"), "--cron", "*/5 * * * *"])  # fmt: skip
    assert res.exit_code != 0 and not tab.exists(), res.output
    assert "control character" in res.stderr or "newline" in res.stderr, res.stderr
