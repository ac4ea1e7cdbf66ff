"""Node faults, decided once and pure (docs/faults.md): which nodes of a run look like black
holes, and which ended elements a node's fault resubmits, away from which nodes. The store
gathers the evidence (store/nodes.py); the sync and the fast `status` ask the same questions.

A black hole fails the elements it gets within seconds, without any NODE_FAIL (a bad mount,
a missing module, a full /tmp), and Slurm keeps feeding it. The rule compares a node with
the others *of the same run*: elements that fail fast on every node are the workflow's bug,
and no node is blamed for them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from hpcflow.states import TaskState

# the failures a node's fault may explain (not a cancel, an upstream failure or a preemption)
NODE_FAULT_STATES = frozenset(
    {TaskState.FAILED, TaskState.NODE_FAIL, TaskState.OUT_OF_MEMORY, TaskState.TIMEOUT}
)
NODE_FAULT_VALUES: tuple[str, ...] = tuple(sorted(s.value for s in NODE_FAULT_STATES))


@dataclass(frozen=True)
class BlackHoleRule:
    """The thresholds (the site's ``faults.black_hole``, docs/site-configs.md)."""

    min_failures: int = 5  # fast failures on the node before it is suspected
    within_s: int = 60  # a failure this soon after the element started counts as fast
    min_share: float = 0.5  # of the node's decided elements, the share that failed fast
    others_max_share: float = 0.1  # on the other nodes at most this share failed fast ...
    min_others: int = 5  # ... out of at least this many decided elements there

    @classmethod
    def of(cls, doc: dict[str, Any] | None) -> BlackHoleRule | None:
        return None if not doc else cls(**{k: doc[k] for k in cls.__dataclass_fields__ if k in doc})


@dataclass(frozen=True)
class NodeTally:
    """One node's elements in a run: ``fast`` failed within ``within_s`` of their start;
    ``lasted`` completed, or ran longer than that (still running or not). Elements younger
    than ``within_s`` are not decided yet and count in neither. ``codes``: the fast
    failures by exit code (how they failed), ``(code, count)`` pairs."""

    node: str
    fast: int
    lasted: int
    codes: tuple[tuple[int | None, int], ...] = ()


@dataclass(frozen=True)
class BlackHole:
    node: str
    fast: int
    decided: int
    others_fast: int
    others_decided: int
    within_s: int
    codes: tuple[tuple[int | None, int], ...] = ()

    def why(self) -> str:
        codes = ", ".join(f"{'?' if c is None else c} x{n}" for c, n in self.codes)
        return (
            f"{self.fast} of its {self.decided} elements failed within {self.within_s} s of "
            f"their start{f' (exit code {codes})' if codes else ''}; on the other nodes "
            f"{self.others_fast} of {self.others_decided} failed that way"
        )


def black_holes(tallies: Iterable[NodeTally], rule: BlackHoleRule | None) -> list[BlackHole]:
    """The nodes whose elements fail fast far more often than the other nodes' do: at least
    ``min_failures`` fast failures, ``min_share`` of the node's decided elements, while the
    nodes not suspected failed fast *the same way* (with the exit codes the suspect's
    elements failed with; any code when the tally has none) at most ``others_max_share``
    of at least ``min_others`` decided elements. When every node fails fast, none is a
    black hole (the workflow is); nor when the others fail the same way often enough."""
    if rule is None:
        return []
    ts = [t for t in tallies if t.fast + t.lasted > 0]
    suspects = [
        t
        for t in ts
        if t.fast >= rule.min_failures and t.fast >= rule.min_share * (t.fast + t.lasted)
    ]
    healthy = [t for t in ts if t not in suspects]
    od = sum(t.fast + t.lasted for t in healthy)
    if od < rule.min_others:
        return []
    out = []
    for t in sorted(suspects, key=lambda t: t.node):
        way = {c for c, _ in t.codes}
        of = sum(
            sum(n for c, n in h.codes if c in way) if way and h.codes else h.fast for h in healthy
        )
        if of <= rule.others_max_share * od:
            codes = tuple(sorted(t.codes, key=lambda cn: -cn[1]))
            out.append(BlackHole(t.node, t.fast, t.fast + t.lasted, of, od, rule.within_s, codes))
    return out


@dataclass(frozen=True)
class Faulted:
    """An element that ended in a state a node's fault may explain, where it ended."""

    id: int
    state: TaskState
    node: str | None
    fast: bool  # failed within the rule's within_s of its start
    node_retries: int  # times hpcflow resubmitted it for a node's fault


def node_resubmissions(
    faulted: Iterable[Faulted], avoided: Iterable[str], retries: int
) -> dict[frozenset[str], list[int]]:
    """Which elements a node's fault resubmits, grouped by the nodes each must avoid (the
    ``avoided`` ones, black holes): NODE_FAIL elements (Slurm did not requeue them) and
    elements that failed fast on a black hole, each at most ``retries`` times. A node that
    died is not excluded: Slurm schedules nothing on it while it is DOWN, and once it is
    back it is as good as any (excluding the only node of a partition would leave the
    element nowhere to run). An element that failed slowly, or fast on a healthy node, is
    the element's own failure and is left alone."""
    bad = frozenset(avoided)
    out: dict[frozenset[str], list[int]] = {}
    for t in faulted:
        if t.node_retries >= retries or not t.node:
            continue
        if t.state is TaskState.NODE_FAIL or (t.node in bad and t.fast):
            out.setdefault(bad, []).append(t.id)
    return out


def new_suspects(
    faulted: Iterable[Faulted], avoided: Iterable[str], rule: BlackHoleRule | None
) -> bool:
    """Whether any node the run does not avoid yet has ``min_failures`` fast failures: only
    then can there be a new black hole, and only then is every node's tally worth reading
    (a GROUP BY over the whole run: 0.2-0.4 s at 100,000 elements)."""
    if rule is None:
        return False
    bad = set(avoided)
    per: dict[str, int] = {}
    for t in faulted:
        if t.fast and t.node and t.node not in bad:
            per[t.node] = per.get(t.node, 0) + 1
    return any(n >= rule.min_failures for n in per.values())


@dataclass(frozen=True)
class NodeDecision:
    """A run's node faults now: its black holes (old and new) and what to resubmit."""

    holes: list[BlackHole]
    resubmit: dict[frozenset[str], list[int]]


def decide(
    tallies: Iterable[NodeTally],
    faulted: Iterable[Faulted],
    avoided: Iterable[str],
    rule: BlackHoleRule | None,
    retries: int,
) -> NodeDecision:
    """The black holes of a run and the resubmissions its node faults call for. A node the
    run avoids already stays avoided, whatever later evidence says."""
    holes = black_holes(tallies, rule)
    bad = set(avoided) | {h.node for h in holes}
    return NodeDecision(holes, node_resubmissions(faulted, bad, retries))


def retry_due(d: NodeDecision | None) -> bool:
    """Whether a sync is due for the run's node faults (something to resubmit)."""
    return d is not None and bool(d.resubmit)
