"""Campaign files: validation errors, the batch plan, and the stored plan's protection."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from hpcflow.campaign.spec import load_campaign
from hpcflow.campaign.tick import ensure_plan
from hpcflow.cli import main
from hpcflow.errors import HpcflowError
from hpcflow.store.db import open_db

from .helpers import REPO

BASE = {
    "name": "c1",
    "workflow": str(REPO / "examples/campaign/workflow.yaml"),
    "site": "lab",
    "events": {"range": [1, 45]},
    "batch_size": 20,
    "batch_param": "events",
}


def _write(tmp_path: Path, **changes: object) -> Path:
    doc = {**BASE, **changes}
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump(doc, sort_keys=False))
    return p


def test_plan_batches(tmp_path: Path) -> None:
    lc = load_campaign(_write(tmp_path))
    assert [len(b) for b in lc.batches()] == [20, 20, 5]
    assert lc.batches()[2] == [41, 42, 43, 44, 45] and lc.jobs_per_batch == 21


def test_csv_events_and_range_format(tmp_path: Path) -> None:
    (tmp_path / "storms.csv").write_text("storm_id,date\nS-01,2019\nS-02,2020\nS-03,2021\n")
    lc = load_campaign(_write(tmp_path, events={"file": "storms.csv", "column": "storm_id"}))
    assert lc.events == ["S-01", "S-02", "S-03"]
    wf = tmp_path / "wf.yaml"
    wf.write_text(
        "name: r\nparams: {batch: {first: 1, last: 2}}\nsteps:\n  - name: a\n"
        "    foreach: {event: {range: ['{{ params.batch.first }}', '{{ params.batch.last }}']}}\n"
        "    run: 'true'\n"
    )
    lc = load_campaign(
        _write(tmp_path, batch_format="range", batch_param="batch", workflow=str(wf))
    )
    assert lc.batch_value([21, 22, 23]) == {"first": 21, "last": 23}
    assert lc.load_batch([21, 22, 23]).axes["a"]["event"] == [21, 22, 23]
    # the list-style example workflow cannot take a {first, last} batch: said clearly
    r = CliRunner().invoke(
        main, ["campaign", "validate", str(_write(tmp_path, batch_format="range"))]
    )
    assert r.exit_code == 2 and "values must be a list" in r.output


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"batch_param": "nope"}, "the workflow has no parameter 'nope'"),
        ({"workflow": "missing.yaml"}, "workflow file"),
        ({"events": {"range": [5, 1]}}, "first <= last"),
        ({"events": {"file": "x.csv"}}, "file needs column"),
        ({"batch_size": 0}, "batch_size"),
        ({"event_axis": "storm"}, "no foreach axis 'storm'"),
        ({"batch_format": "range", "events": {"values": [1, 2]}}, "batch_format: range needs"),
        ({"name": "Bad Name"}, "name"),
        ({"events": {"values": [1, 1, 2]}}, "value 1 (#2) repeats 1 (#1)"),
    ],
)
def test_validation_errors(tmp_path: Path, changes: dict, fragment: str) -> None:
    p = _write(tmp_path, **changes)
    r = CliRunner().invoke(main, ["campaign", "validate", str(p)])
    assert r.exit_code == 2, r.output
    assert fragment in r.output and "Traceback" not in r.output, r.output


def test_stored_plan_cannot_change(tmp_path: Path) -> None:
    engine = open_db(tmp_path / "db" / "t.db")
    ensure_plan(engine, load_campaign(_write(tmp_path)))
    ensure_plan(engine, load_campaign(_write(tmp_path)))  # same plan: fine
    with pytest.raises(HpcflowError, match="different event set or batch size"):
        ensure_plan(engine, load_campaign(_write(tmp_path, batch_size=10)))
