"""`hpcflow report`: one self-contained HTML file (inline CSS and SVG, no script, nothing
loaded from the network) that opens on an air-gapped login node (docs/report.md)."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy.engine import Engine

from hpcflow.node.jobtool import log_path
from hpcflow.report import svg
from hpcflow.report.data import (
    TAIL_BYTES,
    TAIL_LINES,
    TAIL_SAMPLES,
    TAIL_TOTAL,
    ReportData,
    element_times,
    epoch_utc,
    failure_groups,
    lanes_of,
    run_events,
    states_over_time,
    step_edges,
)
from hpcflow.report.svg import esc
from hpcflow.runners.base import Runner
from hpcflow.store.db import session
from hpcflow.store.lite import dynamic_label
from hpcflow.tracker.efficiency import summarize_step
from hpcflow.tracker.query import status_doc
from hpcflow.tracker.usage import element_uses

CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;max-width:1200px}
h1{font-size:20px}h2{font-size:17px;margin-top:32px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:8px 0}td,th{padding:3px 8px;border-bottom:1px solid #eee;
text-align:right}td:first-child,th:first-child{text-align:left}.small{font-size:11px;fill:#555;
color:#555}.name{font-size:12px;font-weight:600}.kind{font-size:11px;fill:#444}
.edge{stroke:#888;stroke-width:1.5}.box{fill:#fafafa;stroke:#999}pre{background:#f6f6f6;
padding:8px;overflow-x:auto;font-size:12px;max-height:220px}.hists{display:flex;flex-wrap:wrap;
gap:12px}.bad{color:#c62828}code{font-size:12px}
"""


def build(engine: Engine, runner: Runner, run_id: str) -> ReportData:
    doc = status_doc(engine, run_id)
    now = time.time()
    with session(engine) as s:
        db = s.connection()
        edges = step_edges(db, run_id)
        times = element_times(db, run_id)
        submitted = epoch_utc(doc["submitted_at"]) or now
        finished = epoch_utc(doc["finished_at"]) if doc.get("finished_at") else None
        starts = [x[0] for v in times.values() for x in v]
        ends = [x[1] for v in times.values() for x in v]
        t0 = min([submitted, *starts])
        t1 = max([t0 + 1, *ends, finished or (now if not ends else max(ends))])
        lanes = lanes_of(times, list(doc["steps"]), t0, t1, now)
        totals = {n: st["total"] or 0 for n, st in doc["steps"].items()}
        series = states_over_time(db, run_id, totals, t0, t1)
        uses = element_uses(db, run_id)
        failures = failure_groups(db, run_id)
        events, moves = run_events(db, run_id)
    eff = {n: summarize_step(u) for n, u in uses.items()}
    hists = {n: _metrics(u.elements) for n, u in uses.items()}
    _add_tails(runner, doc["run_dir"], failures)
    return ReportData(doc, edges, t0, t1, lanes, series, eff, hists, failures, events, moves)


def _metrics(elements: list[Any]) -> dict[str, list[float]]:
    ok = [e for e in elements if e.elapsed_s]
    return {
        "CPU % of requested": [
            100 * e.cpu_s / ((e.cpus or 1) * e.elapsed_s) for e in ok if e.cpu_s is not None
        ],  # fmt: skip
        "memory % of request": [
            100 * e.peak_mb / e.mem_req_mb for e in ok if e.peak_mb is not None and e.mem_req_mb
        ],  # fmt: skip
        "elapsed s": [e.elapsed_s for e in ok],
    }


def _add_tails(runner: Runner, run_dir: str, failures: list[dict[str, Any]]) -> None:
    want: list[tuple[dict[str, Any], int, str]] = []
    for g in failures:
        for i in g["indices"][:TAIL_SAMPLES]:
            if len(want) < TAIL_TOTAL:
                want.append((g, i, log_path(run_dir, g["step"], i, "err")))
    try:
        got = runner.read_tails([p for *_, p in want], TAIL_BYTES, within=run_dir) if want else {}
    except Exception:  # noqa: BLE001 - a report without tails beats no report
        got = {}
    for g, i, p in want:
        data = got.get(p)
        if data is not None:
            g["tails"][i] = "\n".join(data.decode(errors="replace").splitlines()[-TAIL_LINES:])


def ranges(indices: list[int]) -> str:
    """[1, 2, 3, 7] -> '1-3, 7'."""
    spans: list[list[int]] = []
    for i in sorted(indices):
        if spans and spans[-1][1] == i - 1:
            spans[-1][1] = i
        else:
            spans.append([i, i])
    return ", ".join(f"{a}" if a == b else f"{a}-{b}" for a, b in spans)


def render(r: ReportData) -> str:
    d = r.status
    states = sorted({k for st in d["steps"].values() for k in st["states"]},
                    key=lambda s: list(svg.COLORS).index(s) if s in svg.COLORS else 99)  # fmt: skip
    parts = [
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">',
        # nothing may be fetched: no scripts, styles or images from anywhere
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "style-src 'unsafe-inline'; img-src data:\">",
        f"<title>hpcflow report {esc(d['run_id'])}</title><style>{CSS}</style></head><body>",
        f"<h1>Run <code>{esc(d['run_id'])}</code></h1>",
        '<table class="summary">',
        *(
            f"<tr><th>{k}</th><td>{esc(d.get(key) or '-')}</td></tr>"
            for k, key in (
                ("workflow", "workflow"),
                ("version", "version"),
                ("label", "label"),
                ("state", "state"),
                ("submitted (UTC)", "submitted_at"),
                ("finished (UTC)", "finished_at"),
                ("refreshed (UTC)", "refreshed_at"),
                ("run directory", "run_dir"),
            )
        ),  # fmt: skip
        '</table><h2 id="steps">Steps</h2><table class="counts"><tr><th>step</th>'
        "<th>total</th>" + "".join(f"<th>{esc(s)}</th>" for s in states) + "</tr>",
    ]
    for name, st in d["steps"].items():
        dyn = st.get("dynamic")
        why = f" ({dynamic_label(dyn)})" if dyn and dyn["state"] != "expanded" else ""
        total = "?" if st["total"] is None else st["total"]
        cell = f'<td data-step="{esc(name)}" data-state="total">{total}</td>'
        parts.append(f"<tr><td>{esc(name + why)}</td>{cell}")
        parts.extend(f"<td data-step=\"{esc(name)}\" data-state=\"{esc(s)}\">"
                     f"{st['states'].get(s, 0)}</td>" for s in states)  # fmt: skip
        parts.append("</tr>")
    parts += ["</table>", svg.dag(d["steps"], r.edges),
              "<h2 id=\"timeline\">Timeline</h2>", svg.timeline(r.lanes, r.t0, r.t1),
              "<h2 id=\"states\">Elements by state over time</h2>",
              svg.stacked(r.states_over_time, r.t0, r.t1)]  # fmt: skip
    parts += _efficiency(r)
    parts += _failures(r)
    parts += _history(r)
    parts.append("<p class=\"small\">Made by hpcflow report; self-contained, loads nothing.</p>"
                 "</body></html>")  # fmt: skip
    return "\n".join(parts)


def _efficiency(r: ReportData) -> list[str]:
    out = ["<h2 id=\"efficiency\">Used against requested</h2><table class=\"eff\"><tr>"
           "<th>step</th><th>measured</th><th>CPUs</th><th>CPU eff.</th><th>mem req MB</th>"
           "<th>mem p50/p95/max MB</th><th>limit s</th><th>elapsed p50/p95/max s</th>"
           "<th>core-h used/reserved</th><th>suggest</th></tr>"]  # fmt: skip
    for name, e in r.efficiency.items():
        m, el, c = e["mem"], e["elapsed"], e["cpu"]
        sug = ", ".join(f"{k} {e['suggest'][k]}" for k in ("mem", "time") if k in e["suggest"])
        eff = f"{c['efficiency']:.0%}" if c["efficiency"] is not None else "-"
        out.append(
            f"<tr><td>{esc(name)}</td><td>{e['measured']}/{e['elements']}</td>"
            f"<td>{esc(c['requested'] or '-')}</td><td>{eff}</td>"
            f"<td>{esc(m['requested_mb'] or '-')}</td>"
            f"<td>{'/'.join(esc(m[k] if m[k] is not None else '-') for k in ('p50_mb', 'p95_mb', 'max_mb'))}</td>"  # noqa: E501
            f"<td>{esc(el['limit_s'] or '-')}</td>"
            f"<td>{'/'.join(esc(el[k] if el[k] is not None else '-') for k in ('p50_s', 'p95_s', 'max_s'))}</td>"  # noqa: E501
            f"<td>{e['core_hours']['used']:.3f}/{e['core_hours']['reserved']:.3f}</td>"
            f"<td>{esc(sug or '-')}</td></tr>"
        )
    out.append("</table>")
    for name, metrics in r.histograms.items():
        out.append(f'<h3>{esc(name)}</h3><div class="hists">')
        out.extend(svg.histogram(v, label) for label, v in metrics.items())
        out.append("</div>")
    return out


def _failures(r: ReportData) -> list[str]:
    total = sum(g["count"] for g in r.failures)
    out = [f'<h2 id="failures">Failed elements ({total})</h2>']
    if not r.failures:
        return out + ["<p>none</p>"]
    out.append("<table class=\"failures\"><tr><th>step</th><th>state</th><th>exit code</th>"
               "<th>reason</th><th>elements</th><th>indices</th></tr>")  # fmt: skip
    for g in r.failures:
        out.append(f"<tr><td>{esc(g['step'])}</td><td class=\"bad\">{esc(g['state'])}</td>"
                   f"<td>{esc(g['exit_code'] if g['exit_code'] is not None else '-')}</td>"
                   f"<td>{esc(g['reason'] or '-')}</td><td>{g['count']}</td>"
                   f"<td>{esc(ranges(g['indices']))}</td></tr>")  # fmt: skip
    out.append("</table>")
    for g in r.failures:
        for i, tail in g["tails"].items():
            out.append(f"<h3>{esc(g['step'])}[{i}] {esc(g['state'])}: last lines of stderr</h3>"
                       f"<pre>{esc(tail)}</pre>")  # fmt: skip
    return out


def _history(r: ReportData) -> list[str]:
    out = [
        '<h2 id="history">History</h2><table class="moves"><tr><th>step</th>'
        "<th>elements moved to</th><th>count</th><th>first (UTC)</th><th>last (UTC)</th></tr>"
    ]
    out.extend(f"<tr><td>{esc(m['step'])}</td><td>{esc(m['new_state'])}</td><td>{m['count']}</td>"
               f"<td>{esc(m['first'])}</td><td>{esc(m['last'])}</td></tr>"
               for m in r.moves)  # fmt: skip
    out.append("</table><table class=\"events\"><tr><th>time (UTC)</th><th>kind</th><th>step</th>"
               "<th>from</th><th>to</th><th>reason</th></tr>")  # fmt: skip
    out.extend(
        f"<tr><td>{esc(e['time'])}</td><td>{esc(e['kind'])}</td><td>{esc(e['step'] or '')}</td>"
        f"<td>{esc(e['old_state'] or '')}</td><td>{esc(e['new_state'] or '')}</td>"
        f"<td>{esc(e['reason'] or '')}</td></tr>"
        for e in r.events
    )
    out.append("</table>")
    return out
