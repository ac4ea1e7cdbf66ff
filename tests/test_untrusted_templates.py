"""Templates run sandboxed and bounded; data (params, --set, foreach values, events) is
rendered once, as data, and never evaluated as a template."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from hpcflow.cli import main
from hpcflow.util.templating import render_native, render_segments

from .helpers import run_measured

WF = textwrap.dedent(
    """\
    name: demo
    params:
      units: [A, B]
      msg: hello
    steps:
      - name: a
        foreach:
          unit: {values: "{{ params.units }}"}
        env: {MSG: "{{ params.msg }}"}
        run: echo {{ item.unit }} {{ params.msg }}
    """
)


def _cli(tmp_path: Path, text: str, *args: str):
    wf = tmp_path / "wf.yaml"
    wf.write_text(text)
    return CliRunner().invoke(main, ["validate", str(wf), *args])


PAYLOADS = [
    "{{ cycler.__init__.__globals__.os.popen('touch MARKER').read() }}",
    "{{ lipsum.__globals__['os'].popen('touch MARKER').read() }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{% for x in range(3) %}{{ x }}{% endfor %}",
]


@pytest.mark.parametrize("payload", PAYLOADS)
def test_set_list_value_is_data_not_a_template(
    tmp_path: Path, payload: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A foreach list that comes from a param is never rendered again: the payload is a
    value like any other (today it ran a command during validate)."""
    monkeypatch.chdir(tmp_path)
    res = _cli(tmp_path, WF, "--set", f'units=["{payload}"]')
    assert res.exit_code == 0, res.output
    assert not (tmp_path / "MARKER").exists()


@pytest.mark.parametrize("payload", PAYLOADS[:2])
def test_payload_in_a_workflow_template_is_refused_by_the_sandbox(
    tmp_path: Path, payload: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    text = WF.replace('values: "{{ params.units }}"', f'values: ["{payload}"]')
    res = _cli(tmp_path, text)
    assert res.exit_code == 2
    assert "wf.yaml:" in res.stderr and "Traceback" not in res.output
    assert not (tmp_path / "MARKER").exists()


def test_values_keep_their_text_in_rendered_segments() -> None:
    segs = render_segments("echo {{ params.x }}", {"params": {"x": "{{ 7 * 7 }}"}})
    assert segs == [("lit", "echo "), ("val", "{{ 7 * 7 }}")]


def test_native_value_is_never_read_back_from_text() -> None:
    # NativeEnvironment used literal_eval: the string '1e9' became the float 1e9
    assert render_native("{{ params.n }}", {"params": {"n": "1e9"}}) == "1e9"
    assert render_native("{{ params.n }}", {"params": {"n": "[1, 2]"}}) == "[1, 2]"
    assert render_native("{{ params.n }}", {"params": {"n": 5}}) == 5
    assert render_native("{{ params.a }}-{{ params.b }}", {"params": {"a": 1, "b": 2}}) == "1-2"


@pytest.mark.parametrize(
    "template,fragment",
    [
        ("{% for i in range(10**8) %}x{% endfor %}", "MAX_RANGE"),
        ("{% for i in range(1000) %}{% for j in range(1000) %}{% endfor %}{% endfor %}", "range"),
        ("{{ 'x' * 10**9 }}", "bound"),
        ("{{ 'x' | center(1000000000) }}", "100,000"),
        ("{{ '%1000000000d' % 1 }}", "format widths"),
        ("{{ '{:>1000000000}'.format(1) }}", "format widths"),
        ("{{ 10 ** 100000 }}", "bound"),
        ("{% macro f(s) %}{{ f(s ~ s) }}{% endmacro %}{{ f('x') }}", "bound"),
        (
            "{% set r = range(99999) | list %}{% for a in r %}{% for b in r %}{% endfor %}"
            "{% endfor %}",
            "1 s bound",  # the bound is 5 s; 1 s here, the same clock
        ),
        ("{{ 1/0 }}", "ZeroDivisionError"),
        ("{% include 'x' %}", "not allowed"),
        ("{% import 'x' as y %}", "not allowed"),
    ],
)
def test_template_work_is_bounded(template: str, fragment: str, monkeypatch) -> None:
    import time

    import jinja2

    from hpcflow.util import templating

    monkeypatch.setattr(templating, "MAX_SECONDS", 1.0)
    t0 = time.monotonic()
    with pytest.raises(jinja2.TemplateError, match=fragment):
        render_segments(template, {"params": {}})
    assert time.monotonic() - t0 < 20  # the 1 s clock fired: not a hang (hours of work)


def test_names_items_values_keys_are_the_users() -> None:
    ctx = {"params": {"items": [1, 2], "values": "v", "keys": 3}}
    segs = render_segments("{{ params.items }} {{ params.values }} {{ params.keys }}", ctx)
    assert [v for k, v in segs if k == "val"] == [[1, 2], "v", 3]


def test_axis_named_values_renders_its_value(tmp_path: Path) -> None:
    text = WF.replace("unit:", "values:").replace("item.unit", "item.values")
    res = _cli(tmp_path, text)
    assert res.exit_code == 0, res.output


def test_huge_loop_in_run_is_stopped_quickly_with_a_message(tmp_path: Path) -> None:
    (tmp_path / "site.yaml").write_text(
        (Path(__file__).parent.parent / "site_configs" / "lab.yaml").read_text()
    )
    text = WF.replace(
        "run: echo {{ item.unit }} {{ params.msg }}",
        'run: "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"',
    )
    (tmp_path / "wf.yaml").write_text(text)
    m = run_measured(["--site", "site.yaml", "validate", "wf.yaml"], tmp_path)
    assert m.returncode == 2, m.stderr
    assert "wf.yaml:" in m.stderr and "range" in m.stderr and "Traceback" not in m.stderr
    assert m.seconds < 20 and m.max_rss_mb < 500
