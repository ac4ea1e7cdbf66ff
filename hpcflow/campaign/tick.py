"""Campaign ticks and status: one idempotent step at a time, driven by cron.

A tick: take the campaign's lock (a second, overlapping tick exits at once); store the batch
plan on the first tick; settle batches a crashed tick left half-done; refresh the campaign's
runs from Slurm (one sacct); retry failed batches per policy; then submit the next batches
while fewer than max_in_flight are pending or running, the site's max_submit_jobs leaves room,
and Slurm is not in a back-off period after refusing one. Each batch's idempotency key is
recorded (state SUBMITTING) before its run exists, and the run carries it as its label, so a
batch is never submitted twice (docs/campaigns.md).
"""

from __future__ import annotations

import getpass
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy.engine import Engine

from hpcflow import __version__
from hpcflow.campaign.decide import (
    BatchView,
    admit,
    backoff_seconds,
    in_flight,
    needs_queue_count,
    settled,
    to_retry,
)
from hpcflow.campaign.measure import next_sizes
from hpcflow.campaign.spec import LoadedCampaign
from hpcflow.errors import HpcflowError, SlurmError
from hpcflow.facts import CampaignProgress, campaign_progress, projection
from hpcflow.runners.base import Runner
from hpcflow.slurm.client import SlurmClient
from hpcflow.spec.overrides import Overrides
from hpcflow.states import BatchState
from hpcflow.store import campaigns
from hpcflow.store import rows as rows_
from hpcflow.store.campaigns import BatchRecord
from hpcflow.store.codec import dbapi
from hpcflow.store.db import BatchRow, CampaignRow, Run, session, utcnow
from hpcflow.tracker.notify import deliver, last_batches, queue, targets_for
from hpcflow.tracker.recovery import retry
from hpcflow.tracker.refresh import ACTIVE
from hpcflow.tracker.submit import RunLock, submit
from hpcflow.tracker.sync import sync

WAITING = BatchState.WAITING.value
SUBMITTING = BatchState.SUBMITTING.value
SUBMITTED = BatchState.SUBMITTED.value


def ensure_plan(engine: Engine, lc: LoadedCampaign) -> None:
    """Store the batch plan at the first tick; refuse a file whose plan has changed since."""
    h = lc.plan_hash()
    with session(engine) as s:
        row = s.get(CampaignRow, lc.name)
        if row is not None:
            if row.plan_hash != h:
                raise HpcflowError(
                    f"campaign {lc.name!r} was started with a different event set or batch "
                    f"size (from {row.file}); its batches are fixed so that no event runs "
                    "twice. To change them, give the campaign a new name."
                )
            c = lc.campaign
            if (row.event_axis, row.retry_failed) != (c.event_axis, c.retry_failed):
                row.event_axis, row.retry_failed = c.event_axis, c.retry_failed
                s.add(row)
                s.commit()
            return
        s.add(
            CampaignRow(
                name=lc.name,
                file=str(lc.path.resolve()),
                plan_hash=h,
                event_axis=lc.campaign.event_axis,
                retry_failed=lc.campaign.retry_failed,
            )
        )
        s.flush()
        for i, events in enumerate(lc.batches()):
            s.add(
                BatchRow(
                    campaign=lc.name,
                    index=i,
                    key=f"{lc.name}#{i}",
                    events=events,
                    n_events=len(events),
                )
            )
        s.commit()


def _batches(engine: Engine, name: str) -> list[BatchRow]:
    with session(engine) as s:
        return list(rows_.batches_of(s, name))


def _runs(engine: Engine, ids: list[str]) -> dict[str, Run]:
    with session(engine) as s:
        return rows_.runs_by_id(s, ids)


def _save(engine: Engine, row: BatchRow) -> None:
    with session(engine) as s:
        s.add(row)
        s.commit()


def _settle(engine: Engine, batches: list[BatchRow]) -> None:
    """Batches a tick that died mid-submit left SUBMITTING (see ``decide.settled``)."""
    for b in batches:
        if b.state != SUBMITTING:
            continue
        with session(engine) as s:
            run = rows_.run_labelled(s, f"{b.key}#{b.attempt}")
        b.state = settled(BatchState(b.state), run is not None).value
        b.run_id = run.id if run else None
        _save(engine, b)


def tick(engine: Engine, runner: Runner, lc: LoadedCampaign) -> dict[str, Any]:
    lock = RunLock(engine, f"campaign-{lc.name}")
    if not lock.acquire(wait=False):
        return {"campaign": lc.name, "skipped": "another tick of this campaign is running"}
    try:
        out = _tick(engine, runner, lc)
        digest(engine, lc, out)
        return out
    finally:
        lock.release()


def digest(engine: Engine, lc: LoadedCampaign, out: dict[str, Any]) -> None:
    """One notification per tick that changed something (docs/notify.md), then delivery of
    whatever is pending: never more than a few seconds, never an error for the tick."""
    targets = targets_for("campaign_tick", lc.site.notify, lc.campaign.notify)
    if targets:
        st = status(engine, lc)
        batches = {str(b["index"]): b["state"] for b in st["batches"]}
        doc = {"kind": "campaign_tick", "hpcflow": __version__, "campaign": lc.name,
               "time": utcnow().strftime("%Y-%m-%dT%H:%M:%SZ"), "events": st["events"],
               "batches": batches, "submitted": out["submitted"], "retried": out["retried"],
               "notes": out["notes"], "failed_events": len(st["failed_events"]),
               "finished": st["finished"]}  # fmt: skip
        if out["submitted"] or out["retried"] or batches != last_batches(engine, lc.name):
            queue(engine, f"campaign_tick:{lc.name}:{doc['time']}", targets, doc)
    deliver(engine)


def _views(batches: list[BatchRow], runs: dict[str, Run]) -> list[BatchView]:
    return [
        BatchView(
            b.index,
            BatchState(b.state),
            runs[b.run_id].state if b.run_id in runs else None,
            b.retries,
        )
        for b in batches
    ]


Sizes = tuple[Overrides | None, dict[str, dict[str, str]], list[str]]


def _tick(engine: Engine, runner: Runner, lc: LoadedCampaign) -> dict[str, Any]:
    site, c = lc.site, lc.campaign
    out: dict[str, Any] = {"campaign": lc.name, "submitted": [], "retried": [], "notes": []}
    ensure_plan(engine, lc)
    batches = _batches(engine, lc.name)
    _settle(engine, batches)
    ids = [b.run_id for b in batches if b.run_id]
    runs = _runs(engine, ids)
    active = [r for r in runs.values() if r.state in ACTIVE]
    if active:
        sync(engine, runner, site, active, force=True)
        runs = _runs(engine, ids)
    _retry_failed(engine, runner, lc, batches, runs, out)
    runs = _runs(engine, ids)
    flying = in_flight(_views(batches, runs))
    with session(engine) as s:
        camp = s.get(CampaignRow, lc.name)
        assert camp is not None
    now = utcnow()
    waiting = [b for b in batches if b.state == WAITING]
    limit = site.limits.max_submit_jobs
    queued = None
    backing_off = camp.backoff_until is not None and camp.backoff_until > now
    if not backing_off and needs_queue_count(len(waiting), flying, c.max_in_flight, limit):
        queued = SlurmClient(runner).queued_tasks(site.login.user or getpass.getuser())
    adm = admit(
        len(waiting), flying, c.max_in_flight, lc.jobs_per_batch, limit, queued,
        camp.backoff_until, now,
    )  # fmt: skip
    refused = False
    sizes = _sizes(engine, runner, lc, batches, runs, waiting[: adm.count])
    for b in waiting[: adm.count]:
        if not _submit_batch(engine, runner, lc, b, out, sizes):
            refused = True
            break
        flying += 1
    if adm.note and not refused:
        out["notes"].append(adm.note)
    out["in_flight"] = flying
    out["remaining"] = len([b for b in _batches(engine, lc.name) if b.state == WAITING])
    return out


def _retry_failed(
    engine: Engine,
    runner: Runner,
    lc: LoadedCampaign,
    batches: list[BatchRow],
    runs: dict[str, Run],
    out: dict[str, Any],
) -> None:
    c = lc.campaign
    chosen = set(to_retry(_views(batches, runs), c.retry_failed))
    for b in batches:
        if b.index not in chosen or not b.run_id:
            continue
        b.retries += 1
        try:
            res = retry(engine, runner, lc.site, b.run_id, [], [], None, None)
            out["retried"].append({"batch": b.index, "run_id": b.run_id, "jobs": len(res.jobs)})
            b.note = f"retry {b.retries}/{c.retry_failed}"
        except HpcflowError as e:
            b.note = f"retry {b.retries}/{c.retry_failed} not possible: {e}"
            out["notes"].append(f"batch {b.index}: {b.note}")
        _save(engine, b)


def _sizes(
    engine: Engine, runner: Runner, lc: LoadedCampaign, batches: list[BatchRow],
    runs: dict[str, Run], todo: list[BatchRow],
) -> Sizes:  # fmt: skip
    """right_size: what the next batches ask for, from the batches before them."""
    if lc.campaign.right_size is None or not todo:
        return None, {}, []
    every = [b.run_id for b in batches if b.run_id]
    finished = [i for i in every if i in runs and runs[i].state not in ACTIVE]
    return next_sizes(engine, runner, lc, finished, every, lc.load_batch(todo[0].events))


def _submit_batch(
    engine: Engine,
    runner: Runner,
    lc: LoadedCampaign,
    b: BatchRow,
    out: dict[str, Any],
    sizes: Sizes = (None, {}, []),
) -> bool:
    """Submit one batch under its idempotency key; False when Slurm refused it."""
    b.attempt += 1
    b.state = SUBMITTING
    _save(engine, b)  # the idempotency key's intent, before any run or sbatch exists
    resources, sized, notes = sizes
    try:
        loaded = lc.load_batch(b.events, resources)
        sub = submit(engine, runner, loaded, lc.site, f"{b.key}#{b.attempt}", notes,
                     lc.campaign.notify)  # fmt: skip
    except SlurmError as e:
        b.state, b.run_id, b.note = WAITING, None, f"refused: {e}".splitlines()[0]
        _save(engine, b)
        _back_off(engine, lc, str(e))
        out["notes"].append(f"batch {b.index}: {b.note}; backing off")
        return False
    except Exception:
        b.state = WAITING
        _save(engine, b)
        raise
    b.state, b.run_id, b.submitted_at, b.note = SUBMITTED, sub.run_id, utcnow(), None
    b.resources = sized or None
    _save(engine, b)
    if notes:
        out["notes"].extend(f"batch {b.index}: {n}" for n in notes)
    _clear_backoff(engine, lc.name)
    out["submitted"].append({"batch": b.index, "run_id": sub.run_id, "events": b.n_events})
    return True


def _back_off(engine: Engine, lc: LoadedCampaign, why: str) -> None:
    with session(engine) as s:
        camp = s.get(CampaignRow, lc.name)
        assert camp is not None
        wait = backoff_seconds(lc.campaign.refusal_backoff, camp.refusals)
        camp.refusals += 1
        camp.backoff_until = utcnow() + timedelta(seconds=wait)
        camp.note = why.splitlines()[0]
        s.add(camp)
        s.commit()


def _clear_backoff(engine: Engine, name: str) -> None:
    with session(engine) as s:
        camp = s.get(CampaignRow, name)
        if camp and (camp.refusals or camp.backoff_until):
            camp.refusals, camp.backoff_until = 0, None
            s.add(camp)
            s.commit()


def _progress(engine: Engine, name: str) -> tuple[list[BatchRecord], CampaignProgress]:
    """Its batches and progress, read by the one campaign reader (store/campaigns.py)."""
    with session(engine) as s:
        try:
            _, batches, prog = campaigns.progress(dbapi(s), name)
        except KeyError:  # before the first tick stores the plan
            return [], campaign_progress([], {}, "event", 0)
    return batches, prog


def status(engine: Engine, lc: LoadedCampaign) -> dict[str, Any]:
    stored, prog = _progress(engine, lc.name)
    counts = dict(prog.counts)
    if not stored:
        counts["pending"] = len(lc.events)
    planned = lc.batches()
    batches: list[BatchRecord | None] = list(stored) or [None] * len(planned)
    first = min((b.submitted_at for b in stored if b.submitted_at), default=None)
    rate, eta = projection(counts, first, datetime.now(timezone.utc))
    rows = []
    for i, b in enumerate(batches):
        if b is None:
            rows.append(
                {
                    "index": i,
                    "run_id": None,
                    "state": WAITING,
                    "events": len(planned[i]),
                }
            )
            continue
        f = b.facts
        rows.append(
            {
                "index": f.index,
                "run_id": f.run_id,
                "state": b.run_state or f.state.value,
                "events": b.n_events,
                "retries": f.retries,
                "note": b.note,
            }
            | ({"right_size": b.resources} if b.resources else {})
        )
    with session(engine) as s:
        camp = s.get(CampaignRow, lc.name)
    return {
        "name": lc.name,
        "events": {"total": len(lc.events), **counts},
        "batches": rows,
        "batch_size": lc.batch_size,
        "throughput_per_hour": round(rate, 2),
        "projected_finish": eta.strftime("%Y-%m-%dT%H:%M:%SZ") if eta else None,
        "backoff_until": camp.backoff_until.strftime("%Y-%m-%dT%H:%M:%SZ")
        if camp and camp.backoff_until
        else None,
        "failed_events": prog.failed,
        "finished": counts["running"] == 0
        and counts["pending"] == 0
        and not any(r["state"] in (*ACTIVE, WAITING, SUBMITTING) for r in rows),
    }
