"""Memory and time are typed once, when a file is loaded (hpcflow/spec/units.py): every model
holds megabytes and seconds, and what a dump writes reads back as the same numbers."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from pydantic import ValidationError

from hpcflow.spec.overrides import ResourceOverride
from hpcflow.spec.site import Site
from hpcflow.spec.units import duration_text, mem_text
from hpcflow.spec.workflow import Resources, Retry, Workflow

PKG = Path(__file__).resolve().parents[1] / "hpcflow"


@pytest.mark.parametrize(
    "written, mb",
    [("512M", 512), ("6G", 6144), ("1.5G", 1536), (4096, 4096), ("2T", 2 * 1024 * 1024),
     ("1024K", 1), ("300MB", 300), ("2GiB", 2048)],
)  # fmt: skip
def test_memory_is_megabytes_from_the_file_on(written: object, mb: int) -> None:
    assert Resources(mem=written).mem == mb
    assert ResourceOverride(mem=written).mem == mb


@pytest.mark.parametrize(
    "written, seconds",
    [("90s", 90), ("20m", 1200), ("1h30m", 5400), ("2-00:00:00", 172800), ("01:30:00", 5400),
     ("10:30", 630), ("1d", 86400), ("0.5m", 30)],
)  # fmt: skip
def test_time_is_seconds_from_the_file_on(written: str, seconds: int) -> None:
    assert Resources(time=written).time == seconds
    assert ResourceOverride(time=written).time == seconds


@pytest.mark.parametrize(
    "field, value, why",
    [("mem", "6Q", "bad memory size"), ("mem", 1.5, "bad memory size"), ("mem", 0, "positive"),
     ("mem", True, "yes/no"), ("time", 10, "ambiguous"), ("time", "10", "ambiguous"),
     ("time", "400d", "365 days"), ("time", "soon", "bad duration")],
)  # fmt: skip
def test_bad_sizes_and_times_are_refused_with_the_fix(field: str, value: object, why: str) -> None:
    with pytest.raises(ValidationError, match=why):
        Resources(**{field: value})


@pytest.mark.parametrize("mb", [1, 100, 1000, 1024, 1536, 6144, 16000, 1024 * 1024, 3 * 1024**2])
def test_memory_text_reads_back_the_same(mb: int) -> None:
    assert Resources(mem=mem_text(mb)).mem == mb
    assert mem_text(6144) == "6G" and mem_text(16000) == "16000M"


@pytest.mark.parametrize("s", [1, 59, 60, 90, 3600, 5400, 86399, 86400, 90061, 365 * 86400])
def test_time_text_reads_back_the_same(s: int) -> None:
    assert Resources(time=duration_text(s)).time == s
    assert duration_text(5400) == "1h30m" and duration_text(90061) == "1d1h1m1s"


def test_durations_with_zero_for_none() -> None:
    r = Retry(backoff=0, max_backoff="0s")
    assert (r.backoff, r.max_backoff) == (0, 0)
    assert Retry().max_backoff == 600  # the default is typed too
    site = Site(name="x", tracker={"poll_interval": "0s", "lost_after": "2m"})
    assert (site.tracker.poll_interval, site.tracker.lost_after, site.tracker.submit_timeout) == (
        0, 120, 60)  # fmt: skip
    assert (site.limits.min_task_time, site.limits.cache_ttl) == (300, 3600)


def test_a_dumped_workflow_loads_back_to_the_same_numbers() -> None:
    """dynamic/spec.json holds the workflow as JSON and the expansion loads it again."""
    wf = Workflow(
        name="w",
        steps=[{"name": "a", "run": "true", "resources": {"mem": "1.5G", "time": "1h30m"},
                "retry": {"attempts": 2, "backoff": "30s"}}],
    )  # fmt: skip
    dumped = wf.model_dump(mode="json", by_alias=True)
    assert dumped["steps"][0]["resources"]["mem"] == "1536M"
    assert dumped["steps"][0]["resources"]["time"] == "1h30m"
    again = Workflow.model_validate(dumped)
    assert again.steps[0].resources == wf.steps[0].resources
    assert again.steps[0].retry == wf.steps[0].retry


PARSERS = {"parse_mem_mb", "parse_duration_s", "parse_slurm_time_s"}
# where text becomes a number: the spec's typed fields, and Slurm's own output (sacct ReqMem)
PARSING_ALLOWED = {"spec/units.py", "util/units.py", "slurm/commands.py"}


def parser_uses(tree: ast.AST) -> list[int]:
    return sorted(
        n.lineno
        for n in ast.walk(tree)
        if (isinstance(n, ast.Name) and n.id in PARSERS)
        or (isinstance(n, ast.alias) and n.name in PARSERS)
        or (isinstance(n, ast.Attribute) and n.attr in PARSERS)
    )


def test_memory_and_time_are_parsed_only_at_the_edge() -> None:
    found = [
        f"{p.relative_to(PKG)}:{line}"
        for p in sorted(PKG.rglob("*.py"))
        if str(p.relative_to(PKG)) not in PARSING_ALLOWED
        for line in parser_uses(ast.parse(p.read_text()))
    ]
    assert found == [], "use the typed fields (spec/units.py: MB, JobTime, Seconds):\n" + "\n".join(
        found
    )
    assert parser_uses(ast.parse("from x import parse_mem_mb\nunits.parse_duration_s(v)")) == [1, 2]


def test_overrides_and_defaults_stay_typed() -> None:
    """An overrides file (or right-sizing) replaces a step's memory and time with numbers:
    the site fit compares them with the partition's (a TypeError here crashed `submit
    --overrides` and every right-sized campaign tick on the lab)."""
    from hpcflow.spec.overrides import Overrides, apply_overrides
    from hpcflow.spec.sitefit import check_site, effective_resources
    from hpcflow.util.yamlsafe import Located

    wf = Workflow(name="w", defaults={"resources": {"mem": "1G"}},
                  steps=[{"name": "a", "run": "true", "resources": {"time": "10m"}}])  # fmt: skip
    ov = Overrides(steps={"a": {"resources": {"mem": "1600M", "time": "2h"}}})
    got, problems = apply_overrides(wf, ov)
    assert problems == [] and (got.steps[0].resources.mem, got.steps[0].resources.time) == (
        1600, 7200)  # fmt: skip
    site = Site(name="x", partitions={"p": {"default": True, "mem": "1G", "max_time": "1h"}})
    r = effective_resources(got, got.steps[0], site)
    assert (r.mem, r.time, r.partition) == (1600, 7200, "p")
    doc = Located({}, {}, "wf.yaml")
    why = [p.message for p in check_site(got, doc, site)]
    assert any("asks for 1600M of memory but a node of partition 'p' has 1G" in w for w in why)
    assert any("time 2h is over partition 'p''s limit of 1h" in w for w in why), why
