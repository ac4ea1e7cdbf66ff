"""Every #SBATCH value is one word; sbatch_extra cannot name a managed flag in any form
getopt accepts; names that reach scripts are identifiers; site problems blame the site file."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from hpcflow.cli import main
from hpcflow.errors import InvalidInput
from hpcflow.spec.site import load_site
from hpcflow.util.names import check_sbatch_extra

from .helpers import lab_site

WF = "name: demo\nsteps:\n  - name: a\n    run: echo\n"


def _validate(tmp_path: Path, text: str, site: Path | None = None):
    (tmp_path / "wf.yaml").write_text(text)
    args = ["--site", str(site)] if site else []
    return CliRunner().invoke(main, [*args, "validate", str(tmp_path / "wf.yaml")])


@pytest.mark.parametrize("field", ["partition", "account", "qos", "constraint"])
@pytest.mark.parametrize("value", ["x --wrap=id", "-x", "x\t--uid=0", "x'y", "a b"])
def test_workflow_sbatch_values_must_be_one_word(tmp_path: Path, field: str, value: str) -> None:
    text = WF + f"    resources: {{{field}: {value!r}}}\n"
    res = _validate(tmp_path, text.replace("'", '"') if "'" not in value else text)
    assert res.exit_code == 2, res.output
    assert "wf.yaml:5:" in res.stderr and "one word" in res.stderr


def test_constraint_operators_are_allowed(tmp_path: Path) -> None:
    res = _validate(tmp_path, WF + "    resources: {constraint: 'intel&(ib|opa)'}\n")
    assert res.exit_code == 0, res.output


def site_with(tmp_path: Path, repo: Path, **changes: object) -> Path:
    return lab_site(tmp_path / "site.yaml", **changes)


@pytest.mark.parametrize(
    "changes,fragment",
    [
        ({"account": "acct --wrap=id"}, "account"),
        ({"account": "-Aother"}, "account"),
        ({"partitions": {"de bug": {"default": True}}}, "partition name"),
        ({"defaults": {"qos": "normal --uid=0"}}, "qos"),
        ({"env": {"BAD NAME": "x"}}, "not an identifier"),
        ({"env": {"OK\n": "x"}}, "not an identifier"),
        ({"env": {"X;id": "x"}}, "not an identifier"),
        ({"env": {"A=B": "x"}}, "not an identifier"),
        ({"env": {"HPCFLOW_RUN_DIR": "/"}}, "reserved"),
        ({"sbatch_extra": ["--comment=two words"]}, "one word"),
    ],
)
def test_site_values_are_refused_in_the_site_file(
    tmp_path: Path, repo: Path, changes: dict, fragment: str
) -> None:
    site = site_with(tmp_path, repo, **changes)
    with pytest.raises(InvalidInput, match=fragment) as e:
        load_site(str(site))
    assert all(p.file == str(site) for p in e.value.problems)
    res = _validate(tmp_path, WF, site)  # and validate blames the site, not the workflow
    assert res.exit_code == 2 and "site.yaml:" in res.stderr and "wf.yaml" not in res.stderr


@pytest.mark.parametrize(
    "entry",
    [
        "--array=0-9",
        "--arr=0-9",
        "--depend=afterok:1",
        "--dependency afterok:1",
        "--kill-on-invalid-dep=no",
        "--kill",
        "--out=/tmp/x",
        "--time=10",
        "--mem=1",
        "--chdir=/",
        "-a 0-9",
        "-a0-9",
        "-d=afterok:1",
        "-dafterok:1",
        "-J name",
        "-o /tmp/x",
        "-e /tmp/x",
        "-D /",
        "-sJname",  # a bundle: -s then -J name
        "--wrap=id",
        "nope",
    ],
)
def test_sbatch_extra_refuses_managed_flags_in_every_form(entry: str) -> None:
    with pytest.raises(ValueError):
        check_sbatch_extra(entry)


@pytest.mark.parametrize("entry", ["--exclusive", "--mail-type=END", "--comment=ok", "-H"])
def test_sbatch_extra_allows_other_flags(entry: str) -> None:
    assert check_sbatch_extra(entry) == entry


@pytest.mark.parametrize(
    "where,text",
    [
        ("param", "params:\n  'a b': 1\n"),
        ("param", 'params:\n  "a\\n": 1\n'),
        ("param", "params:\n  a=b: 1\n"),
        ("env", "defaults:\n  env: {'A;B': 1}\n"),
        ("env", 'defaults:\n  env: {"A\\n": 1}\n'),
    ],
)
def test_workflow_names_are_identifiers(tmp_path: Path, where: str, text: str) -> None:
    res = _validate(tmp_path, WF + text)
    assert res.exit_code == 2, res.output
    assert "identifier" in res.stderr


def test_axis_name_with_trailing_newline_is_refused(tmp_path: Path) -> None:
    res = _validate(tmp_path, WF + '    foreach: {"e\\n": {values: [1]}}\n')
    assert res.exit_code == 2 and "identifier" in res.stderr
