"""hpcflow benchmarks: prints figures, asserts nothing.

python benchmarks/bench.py compile          # compile+render for 100 / 10,000 / 100,000 elements
python benchmarks/bench.py chain [--n 200]  # lab cluster: 3-step `each` chain, arrays vs
                                            # one sbatch per element (needs slurm-lab up)
python benchmarks/bench.py tracker [--against TREE]
    # record 100,000 elements, then one refresh that finds them all COMPLETED (sacct answers
    # from a canned text, parsed for real); with --against, the same figures for another
    # checkout (e.g. a `git worktree` of an older commit), in the same run
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from hpcflow.compile.plan import compile_plan  # noqa: E402
from hpcflow.render.scripts import render_run  # noqa: E402
from hpcflow.slurm.commands import SACCT_FIELDS  # noqa: E402
from hpcflow.slurm.usage import USAGE_FIELDS  # noqa: E402
from hpcflow.spec.site import load_site  # noqa: E402
from hpcflow.spec.validate import load_workflow  # noqa: E402

FFRD = """\
name: bench
params: {n: 10}
steps:
  - {name: sample, run: 'python3 sample.py --out {{ run_dir }}/storms.csv'}
  - name: hms
    after: [sample]
    foreach: {event: {range: [1, "{{ params.n }}"]}}
    run: hms-run --event {{ item.event }} --out {{ task_dir }}
  - name: ras
    after: {hms: each}
    foreach:
      event: {range: [1, "{{ params.n }}"]}
      unit: {values: [A, B]}
    run: ras-run --event {{ item.event }} --unit {{ item.unit }} --hms {{ upstream.hms.task_dir }}
  - {name: summarize, after: {ras: any}, run: 'python3 summarize.py {{ run_dir }}'}
"""


def bench_compile() -> None:
    site = load_site(str(REPO / "site_configs/lab.yaml"))
    print(
        f"{'elements':>9} {'events':>7} {'compile s':>10} {'render s':>9} {'sbatch calls':>13}"
        f" {'tasks MB':>9} {'peak MB':>8}"
    )
    with tempfile.TemporaryDirectory() as d:
        wf = Path(d) / "wf.yaml"
        wf.write_text(FFRD)
        for total in (100, 10_000, 100_000):
            n = total // 3  # hms n + ras 2n = 3n elements
            t0 = time.perf_counter()
            loaded = load_workflow(wf, [f"n={n}"], site)
            plan = compile_plan(loaded, site, 1001, "bench-run", "/scratch/bench-run")
            t1 = time.perf_counter()
            rr = render_run(plan, loaded, site)
            t2 = time.perf_counter()
            tracemalloc.start()  # second pass for memory: tracemalloc slows the first
            loaded = load_workflow(wf, [f"n={n}"], site)
            render_run(compile_plan(loaded, site, 1001, "b", "/s/b"), loaded, site)
            peak = tracemalloc.get_traced_memory()[1] / 1e6
            tracemalloc.stop()
            size = sum(len(v) for k, v in rr.files.items() if k.endswith(".tasks")) / 1e6
            elements = sum(s.n_elements for s in plan.steps.values())
            print(
                f"{elements:>9} {n:>7} {t1 - t0:>10.3f} {t2 - t1:>9.3f} {len(rr.jobs):>13}"
                f" {size:>9.2f} {peak:>8.1f}"
            )


CHAIN = """\
name: chain
params: {n: 200}
steps:
  - {name: a, foreach: {e: {range: [1, "{{ params.n }}"]}}, run: 'true'}
  - {name: b, foreach: {e: {range: [1, "{{ params.n }}"]}}, after: {a: each}, run: 'true'}
  - {name: c, foreach: {e: {range: [1, "{{ params.n }}"]}}, after: {b: each}, run: 'true'}
"""


def _wait(job_ids: list[str], timeout: float = 1800) -> None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        out = subprocess.run(
            ["squeue", "-h", "-j", ",".join(job_ids)], capture_output=True, text=True
        ).stdout
        if not out.strip():
            return
        time.sleep(0.5)
    raise SystemExit("timed out waiting for jobs")


def _site_in(dp: Path, **swap: str) -> Path:
    """The lab site config with scratch in ``dp`` and ``swap`` (old text -> new) applied."""
    text = (REPO / "site_configs/lab.yaml").read_text()
    text = text.replace("/tmp/hpcflow-scratch/{user}", str(dp / "scratch"))
    for old, new in swap.items():
        text = text.replace(old, new)
    site = dp / "site.yaml"
    site.write_text(text)
    return site


def bench_chain(n: int) -> None:
    with tempfile.TemporaryDirectory(dir="/tmp") as d:
        dp = Path(d)
        site = _site_in(dp)
        wf = dp / "chain.yaml"
        wf.write_text(CHAIN)
        env_db = {"HPCFLOW_DB": str(dp / "tracker.db")}
        import os

        t0 = time.perf_counter()
        p = subprocess.run(
            [
                sys.executable,
                "-m",
                "hpcflow",
                "--site",
                str(site),
                "submit",
                str(wf),
                "--set",
                f"n={n}",
                "--json",
            ],
            capture_output=True,
            text=True,
            env={**os.environ, **env_db},
            check=True,
        )
        t_submit = time.perf_counter() - t0
        sub = json.loads(p.stdout)
        _wait([j["slurm_job_id"] for j in sub["jobs"]])
        t_arrays = time.perf_counter() - t0
        calls_arrays = len(sub["jobs"])

        # the same DAG, one sbatch per element, afterok on the matching upstream element
        t0 = time.perf_counter()
        ids: list[str] = []
        prev: list[str | None] = [None] * n
        for _step in "abc":
            cur: list[str | None] = []
            for i in range(n):
                argv = [
                    "sbatch",
                    "--parsable",
                    "-o",
                    "/dev/null",
                    "--mem=256M",
                    "--kill-on-invalid-dep=yes",
                    "--wrap",
                    "true",
                ]
                if prev[i]:
                    argv.insert(1, f"--dependency=afterok:{prev[i]}")
                jid = (
                    subprocess.run(argv, capture_output=True, text=True, check=True)
                    .stdout.strip()
                    .split(";")[0]
                )
                cur.append(jid)
                ids.append(jid)
            prev = cur
        t_submit_single = time.perf_counter() - t0
        _wait(ids)
        t_single = time.perf_counter() - t0
    print(f"3-step `each` chain, {n} elements per step, lab cluster (16 slots on 2 cores)")
    print(f"{'':<28}{'sbatch calls':>13}{'submit s':>10}{'submit->finished s':>20}")
    print(f"{'hpcflow (arrays+aftercorr)':<28}{calls_arrays:>13}{t_submit:>10.2f}{t_arrays:>20.1f}")
    print(f"{'one sbatch per element':<28}{3 * n:>13}{t_submit_single:>10.2f}{t_single:>20.1f}")


PACKWF = """\
name: packbench
cleanup: never
params: {n: 2000}
steps:
  - name: work
    foreach: {i: {range: [1, "{{ params.n }}"]}}
    PACK
    resources: {mem: 64M}
    run: sleep 0.1
"""


def _hpcflow(dp: Path, *args: str) -> dict:
    import os

    p = subprocess.run(
        [sys.executable, "-m", "hpcflow", *args, "--json"],
        capture_output=True,
        text=True,
        env={**os.environ, "HPCFLOW_DB": str(dp / "tracker.db")},
        check=True,
    )
    return json.loads(p.stdout)


def bench_pack(n: int, pack: int) -> None:
    """(a) makespan of n elements of ~0.1 s: raw one-task-per-element array, hpcflow
    unpacked, hpcflow packed; submit to the last job leaving the queue, same lab, one run."""
    with tempfile.TemporaryDirectory(dir="/tmp") as d:
        dp = Path(d)
        site = _site_in(dp, **{"max_array_size: null": "max_array_size: 10001"})
        rows = []
        t0 = time.perf_counter()
        jid = subprocess.run(
            ["sbatch", "--parsable", f"--array=0-{n - 1}", "-o", "/dev/null", "--mem=64M",
             "--wrap", "sleep 0.1"],
            capture_output=True, text=True, check=True,
        ).stdout.strip().split(";")[0]  # fmt: skip
        _wait([jid])
        rows.append(("raw sbatch --array (1/task)", n, time.perf_counter() - t0))
        for label, spec in (("hpcflow unpacked", ""), (f"hpcflow pack: {pack}", f"pack: {pack}")):
            wf = dp / f"wf{len(rows)}.yaml"
            wf.write_text(PACKWF.replace("PACK", spec))
            t0 = time.perf_counter()
            sub = _hpcflow(dp, "--site", str(site), "submit", str(wf), "--set", f"n={n}")
            _wait([j["slurm_job_id"] for j in sub["jobs"]])
            took = time.perf_counter() - t0
            import os

            w = subprocess.run(  # every element COMPLETED, once slurmdbd has them all
                [sys.executable, "-m", "hpcflow", "watch", sub["run_id"], "--timeout", "600",
                 "--interval", "2"],
                env={**os.environ, "HPCFLOW_DB": str(dp / "tracker.db")}, capture_output=True,
            )  # fmt: skip
            assert w.returncode == 0, w.stdout[-2000:]
            tasks = -(-n // pack) if spec else n
            rows.append((label, tasks, took))
    raw = rows[0][2]
    print(f"{n} elements of ~0.1 s on the lab cluster (16 slots on 2 cores)")
    print(f"{'':<30}{'array tasks':>12}{'makespan s':>12}{'vs raw':>8}")
    for label, tasks, took in rows:
        print(f"{label:<30}{tasks:>12}{took:>12.1f}{took / raw:>8.2f}")


def _timed(argv: list[str], env: dict[str, str], runs: int = 3) -> tuple[float, float]:
    """(median wall s, max RSS MB) of a command, via /usr/bin/time."""
    walls, rss = [], 0.0
    for _ in range(runs):
        t0 = time.perf_counter()
        p = subprocess.run(["/usr/bin/time", "-f", "%M", *argv], capture_output=True,
                           text=True, env=env)  # fmt: skip
        walls.append(time.perf_counter() - t0)
        if p.returncode:
            raise SystemExit(f"{argv}: {p.stderr[-2000:]}")
        rss = max(rss, int(p.stderr.strip().splitlines()[-1]) / 1024)
    return sorted(walls)[len(walls) // 2], rss


def bench_latency(elements: int) -> None:
    """(c) status and submit latency at ``elements``, as ratios to the bare tools, one run."""
    import os

    with tempfile.TemporaryDirectory(dir="/tmp") as d:
        dp = Path(d)
        site = _site_in(
            dp,
            **{
                "max_array_size: null": "max_array_size: 10001",
                "poll_interval: 1s": "poll_interval: 60s",
            },
        )
        env = {**os.environ, "HPCFLOW_DB": str(dp / "tracker.db")}
        py = [sys.executable]
        hp = [sys.executable, "-m", "hpcflow"]
        bare, _ = _timed([*py, "-c", "pass"], env, 5)
        subprocess.run([*hp, "runs"], env=env, check=True, capture_output=True)  # creates it
        empty, rss_empty = _timed([*hp, "status"], env, 5)
        wf = dp / "wf.yaml"  # packed by 10: 100,000 elements are 10,000 array tasks
        wf.write_text(FFRD.replace("    foreach: {event", "    pack: 10\n    foreach: {event")
                      .replace("      event: {range", "      event: {range", 1))  # fmt: skip
        wf.write_text(wf.read_text().replace("    after: {hms: each}\n",
                                             "    after: {hms: each}\n    pack: 10\n"))  # fmt: skip
        n = str(elements // 3)
        inproc = subprocess.run([*py, "-c", SUBMIT_PARTS, str(site), str(wf), n], env=env,
                                capture_output=True, text=True, check=True)  # fmt: skip
        parts = json.loads(inproc.stdout)
        t0 = time.perf_counter()
        p = subprocess.run([*hp, "--site", str(site), "submit", str(wf), "--set", f"n={n}",
                            "--json"], env=env, capture_output=True, text=True)  # fmt: skip
        t_submit = time.perf_counter() - t0
        if p.returncode:
            raise SystemExit(p.stderr)
        sub = json.loads(p.stdout)
        run_id = sub["run_id"]
        subprocess.run(["scancel", *[j["slurm_job_id"] for j in sub["jobs"]]], check=True)
        # a status when no refresh is due: mark the run refreshed now (no Slurm asked)
        import sqlite3
        from datetime import datetime, timezone

        with sqlite3.connect(dp / "tracker.db") as c:
            now = datetime.now(timezone.utc).replace(tzinfo=None).isoformat(sep=" ")
            c.execute("UPDATE run SET refreshed_at = ?", (now,))
        st, rss_st = _timed([*hp, "status", run_id], env, 5)
        tasks, rss_tasks = _timed([*hp, "status", run_id, "--json", "--tasks"], env, 3)
    whole = parts["compile_s"] + parts["render_s"] + parts["record_s"]
    print(f"{elements} elements (FFRD shape, packed by 10), lab cluster, one run")
    print(f"python -c pass                   {bare:7.3f} s")
    print(f"status, empty database           {empty:7.3f} s  {empty / bare:5.1f}x bare  "
          f"{rss_empty:5.0f} MB")  # fmt: skip
    print(f"status RUN, no refresh due       {st:7.3f} s  {st / empty:5.2f}x empty status  "
          f"{rss_st:5.0f} MB")  # fmt: skip
    print(f"status RUN --json --tasks        {tasks:7.3f} s  {rss_tasks:17.0f} MB")
    print(
        f"compile + render + DB insert     {whole:7.3f} s  (in one process: "
        f"{parts['compile_s']:.2f} + {parts['render_s']:.2f} + {parts['record_s']:.2f})"
    )
    print(f"hpcflow submit (whole command)   {t_submit:7.3f} s  {t_submit / whole:5.2f}x that, "
          f"{len(sub['jobs'])} sbatch calls")  # fmt: skip


SUBMIT_PARTS = r"""
import json, sys, tempfile, time
from pathlib import Path
from hpcflow.compile.plan import compile_plan
from hpcflow.render.scripts import render_run
from hpcflow.spec.site import load_site
from hpcflow.spec.validate import load_workflow
try:
    from hpcflow.store.db import open_db
except ImportError:  # a tree from before the store package (issue 25)
    from hpcflow.tracker.db import open_db
from hpcflow.tracker.submit import record_run
site = load_site(sys.argv[1])
t0 = time.perf_counter()
loaded = load_workflow(sys.argv[2], [f"n={sys.argv[3]}"], site)
plan = compile_plan(loaded, site, 10001, "bench-run", "/tmp/x/run")
t1 = time.perf_counter()
rr = render_run(plan, loaded, site)
t2 = time.perf_counter()
with tempfile.TemporaryDirectory() as d:
    record_run(open_db(Path(d) / "t.db"), rr, loaded, site, None)
t3 = time.perf_counter()
print(json.dumps({"compile_s": t1 - t0, "render_s": t2 - t1, "record_s": t3 - t2}))
"""


TRACKER_CODE = r"""
import json, sys, tempfile, time
from datetime import datetime, timezone
from pathlib import Path
try:  # the package layout since the restructure
    from hpcflow.compile.plan import compile_plan
    from hpcflow.render.scripts import render_run
    from hpcflow.runners.base import LocalRunner, Result
    from hpcflow.spec.site import load_site
    from hpcflow.spec.validate import load_workflow
    from hpcflow.store.db import Job, Run, Task, open_db, session
    from hpcflow.tracker.refresh import refresh
    from hpcflow.tracker.submit import record_run
except ImportError:  # the flat layout before it
    from hpcflow.compiler import compile_plan
    from hpcflow.render import render_run
    from hpcflow.runner import Result
    LocalRunner = None
    from hpcflow.site import load_site
    from hpcflow.validate import load_workflow
    from hpcflow.db import Job, Run, Task, open_db, session
    from hpcflow.refresh import refresh
    from hpcflow.submit import record_run
from sqlmodel import select

repo, wf_text, n = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
site = load_site(str(repo / "site_configs/lab.yaml"))
with tempfile.TemporaryDirectory() as d:
    wf = Path(d) / "wf.yaml"
    wf.write_text(wf_text)
    loaded = load_workflow(wf, [f"n={n}"], site)
    plan = compile_plan(loaded, site, 1001, "bench-run", d + "/run")
    rr = render_run(plan, loaded, site)
    engine = open_db(Path(d) / "t.db")
    t0 = time.perf_counter()
    record_run(engine, rr, loaded, site, None)
    t_record = time.perf_counter() - t0
    lines = []
    with session(engine) as s:
        for j in s.exec(select(Job)):
            j.slurm_job_id, j.status = str(1000 + j.id), "SUBMITTED"
            j.submitted_at = datetime.now(timezone.utc)
            s.add(j)
            ids = [int(x) for x in (j.array or "").replace("-", ",").split(",") if x] or [None]
            lo, hi = (ids[0], ids[-1]) if ids[0] is not None else (None, None)
            tids = range(lo, hi + 1) if lo is not None else [None]
            for t in tids:
                jid = f"{j.slurm_job_id}_{t}" if t is not None else j.slurm_job_id
                lines.append(f"{jid}|{jid}|{j.name}|STATE|0:0|2026-12-02T05:00:00|"
                             "END|vm|None||256M")
        s.commit()
        run = s.exec(select(Run)).one()
        sids = {j.id: j.slurm_job_id for j in s.exec(select(Job))}
        # what every element's wrapper wrote when it ended, read once by the refresh
        for t in s.exec(select(Task)):
            sid = sids[t.job_id] + (f"_{t.task_id}" if t.task_id is not None else "")
            tdir = Path(plan.run_dir, "steps", t.step, str(t.index // 1000), str(t.index))
            (tdir / ".hpcflow").mkdir(parents=True, exist_ok=True)
            (tdir / ".hpcflow/result.json").write_text(json.dumps({"index": t.index,
                "state": "COMPLETED", "exit_code": 0, "attempts": 1, "start": 1, "end": 2,
                "slurm_job_id": sid}))
    template = "\n".join(lines) + "\n"
    running = template.replace("|STATE|", "|RUNNING|").replace("|END|", "|Unknown|")
    done = template.replace("|STATE|", "|COMPLETED|").replace("|END|", "|2026-12-02T05:00:01|")
    text = running

    class Canned:
        def run(self, argv, **_):
            return Result(argv, 0, text if argv[0] == "sacct" else "", "")

        def append_file(self, path, data):
            pass

        def read_file(self, path):
            raise OSError(path)

        def read_files(self, paths):  # the real files, as LocalRunner reads them
            return LocalRunner().read_files(paths)

    refresh(engine, Canned(), [run], 0, force=True)  # every element starts
    c0 = time.process_time()
    refresh(engine, Canned(), [run], 0, force=True)  # nothing changed
    cpu_nochange = time.process_time() - c0
    text = done
    t0 = time.perf_counter()
    refresh(engine, Canned(), [run], 0, force=True)  # every element ended
    t_refresh = time.perf_counter() - t0
    with session(engine) as s:
        state = s.get(Run, run.id).state
    import resource
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    elements = sum(sp.n_elements for sp in plan.steps.values())
    print(json.dumps({"elements": elements, "record_s": t_record, "refresh_s": t_refresh,
                      "nochange_cpu_s": cpu_nochange, "peak_mb": peak,
                      "sacct_rows": len(lines), "run": state}))
"""


def bench_tracker(against: str | None, elements: int = 100_000) -> None:
    trees = [("this checkout", REPO)] + ([("--against", Path(against))] if against else [])
    print(
        f"{'':<16}{'elements':>9}{'sacct rows':>11}{'record s':>10}{'refresh s':>11}"
        f"{'no-change cpu s':>16}{'peak MB':>8}  run"
    )
    got = {}
    for label, tree in trees:
        p = subprocess.run(
            [sys.executable, "-c", TRACKER_CODE, str(tree), FFRD, str(elements // 3)],
            capture_output=True,
            text=True,
            env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"},
            cwd="/",  # python -c puts the working directory first on sys.path
        )
        if p.returncode:
            raise SystemExit(f"{label} ({tree}):\n{p.stderr}")
        r = got[label] = json.loads(p.stdout)
        print(
            f"{label:<16}{r['elements']:>9}{r['sacct_rows']:>11}{r['record_s']:>10.2f}"
            f"{r['refresh_s']:>11.2f}{r['nochange_cpu_s']:>16.2f}{r['peak_mb']:>8.0f}  {r['run']}"
        )
    if against:
        a, b = got["this checkout"], got["--against"]
        print(
            f"ratio this/--against: record {a['record_s'] / b['record_s']:.2f}, "
            f"refresh {a['refresh_s'] / b['refresh_s']:.2f}"
        )


REFRESH_PREP = r"""
import json, os, sys, time
from datetime import datetime, timezone
from pathlib import Path
from hpcflow.compile.plan import compile_plan
from hpcflow.render.scripts import render_run
from hpcflow.spec.site import load_site
from hpcflow.spec.validate import load_workflow
try:
    from hpcflow.store.db import Job, open_db, session
except ImportError:  # a tree from before the store package (issue 25)
    from hpcflow.tracker.db import Job, open_db, session
from hpcflow.tracker.submit import record_run
from sqlmodel import select

repo, wf_text, n, d = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), Path(sys.argv[4])
site = load_site(str(repo / "site_configs/lab.yaml"))
wf = d / "wf.yaml"
wf.write_text(wf_text)
loaded = load_workflow(wf, [f"n={n}"], site)
plan = compile_plan(loaded, site, 1001, "bench-run", str(d / "run"))
engine = open_db(d / "t.db")
record_run(engine, render_run(plan, loaded, site), loaded, site, None)
blocks = {"running": {}, "done": {}}
fmt = "{jid}|{jid}|{name}|{state}|0:0|2026-12-02T05:00:00|{end}|vm|None||256M"
with session(engine) as s:
    for j in s.exec(select(Job)):
        j.slurm_job_id, j.status = str(1000 + j.id), "SUBMITTED"
        j.submitted_at = datetime.now(timezone.utc)
        s.add(j)
        if j.array:
            lo, hi = (int(x) for x in j.array.split("%")[0].split("-"))
            jids = [f"{j.slurm_job_id}_{t}" for t in range(lo, hi + 1)]
        else:
            jids = [j.slurm_job_id]
        for phase, state, end in (("running", "RUNNING", "Unknown"),
                                  ("done", "COMPLETED", "2026-12-02T05:00:01")):
            blocks[phase][j.slurm_job_id] = "".join(
                fmt.format(jid=x, name=j.name, state=state, end=end) + "\n" for x in jids)
    s.commit()
    run_id = s.exec(select(Job)).first().run_id
for phase, b in blocks.items():
    (d / f"sacct.{phase}.json").write_text(json.dumps(b))
# what every element's wrapper wrote when it ended, read once by the refresh
import sqlite3
with sqlite3.connect(d / "t.db") as c:
    rows = c.execute("SELECT t.step, t.'index', t.task_id, j.slurm_job_id FROM task t "
                     "JOIN job j ON j.id = t.job_id").fetchall()
for step, index, task_id, sid in rows:
    tdir = Path(plan.run_dir, "steps", step, str(index // 1000), str(index), ".hpcflow")
    tdir.mkdir(parents=True, exist_ok=True)
    (tdir / "result.json").write_text(json.dumps({"index": index, "state": "COMPLETED",
        "exit_code": 0, "attempts": 1, "start": 1, "end": 2,
        "slurm_job_id": sid + (f"_{task_id}" if task_id is not None else ""),
        "outputs": False}))
print(json.dumps({"run_id": run_id, "elements": len(rows)}))
"""

# sacct that prints real-format rows (-P -n, SACCT_FIELDS) for the jobs it is asked about,
# from the phase the benchmark set; logs each call (argv, rows) for the budget and the
# bare-sacct timing
FAKE_SACCT = r"""#!PYTHON
import json, os, sys
d = os.environ["FAKE_SLURM"]
phase = open(os.path.join(d, "phase")).read().strip()
blocks = json.load(open(os.path.join(d, f"sacct.{phase}.json")))
ids = sys.argv[sys.argv.index("-j") + 1].split(",")
tasks = {}  # 'A_i' asks for one task: its own line
for i in {i.split("_")[0] for i in ids if "_" in i}:
    for line in blocks.get(i, "").splitlines(keepends=True):
        tasks[line.split("|", 1)[0]] = line
out = "".join(tasks.get(i, "") if "_" in i else blocks.get(i, "") for i in ids)
sys.stdout.write(out)
if os.environ.get("FAKE_SLURM_LOG", "1") == "1":
    with open(os.path.join(d, "calls.log"), "a") as f:
        f.write(json.dumps({"argv": sys.argv[1:], "rows": out.count("\n")}) + "\n")
"""

REFRESH_ONE = r"""
import json, resource, sys, time
rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
from hpcflow.runners.base import LocalRunner
try:
    from hpcflow.store.db import Run, open_db, session
except ImportError:  # a tree from before the store package (issue 25)
    from hpcflow.tracker.db import Run, open_db, session
from hpcflow.tracker.refresh import refresh
engine = open_db(sys.argv[1])
with session(engine) as s:
    run = s.get(Run, sys.argv[2])
rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
w0, c0 = time.perf_counter(), time.process_time()
refresh(engine, LocalRunner(), [run], 0, force=True)
wall, cpu = time.perf_counter() - w0, time.process_time() - c0
with session(engine) as s:
    state = s.get(Run, run.id).state
print(json.dumps({"wall_s": wall, "cpu_s": cpu, "run": state,
                  "rss_before_mb": rss1 / 1024,
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def _unfinished(db: Path) -> int:
    import sqlite3

    from hpcflow.states import TERMINAL

    done = [st.value for st in TERMINAL]
    with sqlite3.connect(db) as c:
        q = f"SELECT count(*) FROM task WHERE state NOT IN ({', '.join('?' * len(done))})"
        return int(c.execute(q, done).fetchone()[0])


def _calls(d: Path) -> list[dict]:
    log = d / "calls.log"
    if not log.exists():
        return []
    calls = [json.loads(x) for x in log.read_text().splitlines()]
    log.unlink()
    for c in calls:  # the lab wrapper's line: argv joined by spaces (none inside), ns
        if isinstance(c["argv"], str):
            c["argv"], c["own_s"] = c["argv"].split(), c.pop("own_ns") / 1e9
        if "saved" in c:  # the lab wrapper saves the output: its rows are counted here
            out = Path(c.pop("saved"))
            c["rows"] = out.read_text().count("\n") if out.exists() else 0
            out.unlink(missing_ok=True)
    return calls


def _bare(argv: list[str], env: dict[str, str], runs: int = 3) -> float:
    """Median wall time of the same command the refresh ran, output captured, nothing else."""
    walls = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(argv, capture_output=True, text=True, env=env, check=True)
        walls.append(time.perf_counter() - t0)
    return sorted(walls)[len(walls) // 2]


def _refresh_once(d: Path, run_id: str, env: dict[str, str], bare_sacct: str,
                  nice: int = 0) -> dict:  # fmt: skip
    """One forced refresh in a fresh process (what `hpcflow status` pays), then the bare
    sacct it ran, same argv, timed alone. ``nice``: the refresh process's niceness."""
    import os

    tracked = _unfinished(d / "t.db")
    jobs = _unfinished_jobs(d / "t.db")
    # cwd: python -c puts the working directory first on sys.path, before PYTHONPATH
    p = subprocess.run([sys.executable, "-c", REFRESH_ONE, str(d / "t.db"), run_id],
                       capture_output=True, text=True, env=env, cwd=d,
                       preexec_fn=(lambda: os.nice(nice)) if nice else None)  # fmt: skip
    if p.returncode:
        raise SystemExit(p.stderr)
    r = json.loads(p.stdout)
    calls = _calls(d)
    sacct = [c for c in calls if "-j" in c["argv"] and c.get("cmd", "sacct") == "sacct"]
    r["squeue_s"] = sum(c["own_s"] for c in calls if c.get("cmd") == "squeue")
    r["tracked"] = tracked
    r["sacct_calls"] = len(sacct)
    # the once-per-chunk usage query (step rows) is not a poll: its rows are shown apart
    usage = [c for c in sacct if f"--format={','.join(USAGE_FIELDS)}" in c["argv"]]
    r["usage_rows"] = sum(c["rows"] for c in usage)
    r["rows"] = sum(c["rows"] for c in sacct) - r["usage_rows"]
    ids = sacct[0]["argv"][sacct[0]["argv"].index("-j") + 1].split(",") if sacct else []
    r["jobs"] = len({i.split("_")[0] for i in ids})
    if sacct and all("own_s" in c for c in sacct):  # the real sacct, timed where it ran
        r["bare_s"] = sum(c["own_s"] for c in sacct)
    else:  # the fake: the same argv again, alone
        quiet = {**env, "FAKE_SLURM_LOG": "0"}
        r["bare_s"] = sum(_bare([bare_sacct, *c["argv"]], quiet) for c in sacct)
    # the target's baseline: a plain `sacct -X` for the jobs of the unfinished elements,
    # same format and start time, whole jobs
    r["whole_s"] = 0.0
    if jobs:
        start = next((a for c in sacct for a in c["argv"] if a.startswith("--starttime")),
                     "--starttime=now-1days")  # fmt: skip
        argv = [bare_sacct, "-X", "-P", "-n", f"--format={','.join(SACCT_FIELDS)}", start,
                "-j", ",".join(jobs)]  # fmt: skip
        r["whole_s"] = _bare(argv, {**env, "FAKE_SLURM_LOG": "0"}, 1)
    return r


def _unfinished_jobs(db: Path) -> list[str]:
    import sqlite3

    from hpcflow.states import TERMINAL

    done = [st.value for st in TERMINAL]
    with sqlite3.connect(db) as c:
        marks = ", ".join("?" * len(done))
        q = ("SELECT DISTINCT j.slurm_job_id FROM task t JOIN job j ON j.id = t.job_id WHERE "
             f"j.slurm_job_id IS NOT NULL AND t.state NOT IN ({marks})")  # fmt: skip
        return sorted((row[0] for row in c.execute(q, done)), key=int)


def _refresh_row(label: str, n: int, r: dict) -> None:
    grown = max(r["peak_mb"] - r["rss_before_mb"], 0.0) * 1024 / r["tracked"] if r["tracked"] else 0
    ratio = f"{r['wall_s'] / r['bare_s']:7.2f}" if r["bare_s"] else "      -"
    whole = f"{r['wall_s'] / r['whole_s']:7.2f}" if r["whole_s"] else "      -"
    print(f"{n:>8} {label:<34}{r['tracked']:>8}{r['rows']:>8}{r['tracked'] + r['jobs']:>8}"
          f"{r['wall_s']:>8.2f}{r['cpu_s']:>7.2f}{r['bare_s']:>8.3f}{ratio}"
          f"{r['whole_s']:>8.3f}{whole}"
          f"{r['peak_mb']:>7.0f}{grown:>7.2f}  {r['run']}")  # fmt: skip


REFRESH_HEAD = (f"{'elements':>8} {'refresh':<34}{'tracked':>8}{'rows':>8}{'budget':>8}"
                f"{'wall s':>8}{'cpu s':>7}{'sacct s':>8}{'ratio':>7}{'whole s':>8}"
                f"{'ratio':>7}{'peak MB':>7}"
                f"{'KB/el':>7}  run")  # fmt: skip


REFRESH_PHASES = [
    ("all start", "running"),
    ("no change", "running"),
    ("all end (files read)", "done"),
    ("after: nothing left", "done"),
]


def _as_schema_of(tree: Path, db: Path) -> None:
    """Label the database with ``tree``'s schema version: an older tree reads a newer
    database whose tables only gained columns (schema 10 added three) as its own."""
    import re
    import sqlite3

    for rel in ("hpcflow/store/dbfile.py", "hpcflow/tracker/dbfile.py"):
        f = tree / rel
        if f.is_file():
            m = re.search(r"^SCHEMA_VERSION = (\d+)", f.read_text(), re.M)
            if m:
                with sqlite3.connect(db) as c:
                    c.execute(f"PRAGMA user_version = {int(m.group(1))}")
                return


def bench_refresh(sizes: list[int], against: str | None = None, first: bool = False) -> None:
    """(b) refresh cost against the sacct it runs, with a fake sacct that prints real-format
    rows (-X -P -n, SACCT_FIELDS) for the jobs asked: each refresh in a fresh process, as
    `hpcflow status` runs it; 'sacct s' is the same sacct argv run alone. With ``against``
    (another checkout), its refreshes of the same database and files, in the same run; with
    ``first``, before this checkout's (the order a pair runs in can weigh on it)."""
    import os
    import shutil

    print("fake sacct (real-format rows); wall/cpu/peak: the refresh process; KB/el: its")
    print("growth during the refresh per tracked element; budget: tracked elements + jobs")
    print(REFRESH_HEAD)
    for total in sizes:
        with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
            d = Path(tmp)
            env = {"PYTHONPATH": str(REPO), "PATH": f"{d}/bin:/usr/bin:/bin", "FAKE_SLURM": tmp,
                   "HOME": tmp}  # fmt: skip
            argv = [sys.executable, "-c", REFRESH_PREP, str(REPO), FFRD, str(total // 3), tmp]
            p = subprocess.run(argv, capture_output=True, text=True, env=env)
            if p.returncode:
                raise SystemExit(p.stderr)
            run_id = json.loads(p.stdout)["run_id"]
            (d / "bin").mkdir()
            fake = d / "bin/sacct"
            fake.write_text(FAKE_SACCT.replace("PYTHON", sys.executable))
            (d / "bin/squeue").write_text("#!/bin/sh\n")
            for f in ("sacct", "squeue"):
                os.chmod(d / "bin" / f, 0o755)
            n = total + 1  # the FFRD shape: hms n + ras 2n + sample + summarize
            shutil.copy(d / "t.db", d / "t.db.recorded")
            trees = [REPO] + ([Path(against)] if against else [])
            for tree in trees[::-1] if first else trees:
                shutil.copy(d / "t.db.recorded", d / "t.db")
                _as_schema_of(tree, d / "t.db")
                for label, phase in REFRESH_PHASES:
                    (d / "phase").write_text(phase)
                    r = _refresh_once(d, run_id, env | {"PYTHONPATH": str(tree)}, str(fake))
                    _refresh_row(label + (" (--against)" if tree != REPO else ""), n, r)


LAB_WF = """\
name: refreshlab
cleanup: never
params: {n: 5000}
steps:
  - name: work
    foreach: {i: {range: [1, "{{ params.n }}"]}}
    resources: {mem: 64M}
    run: 'true'
"""

SACCT_WRAPPER = r"""#!/bin/bash
# the real sacct (or squeue), recorded: argv, its output and how long it took. Builtins only
# after the tool ($EPOCHREALTIME, no `date`, no `wc`, no pattern substitution over the
# output): the refresh waits for this wrapper, so what it spends besides the tool is charged
# to the refresh, not to own_s. The harness counts the rows of the saved output afterwards.
t0=${EPOCHREALTIME/[.,]/}
out=$(/usr/bin/CMD "$@"); rc=$?
t1=${EPOCHREALTIME/[.,]/}
[ -n "$out" ] && printf '%s\n' "$out"
saved="$FAKE_SLURM/out.$$.$t0"
[ -n "$out" ] && printf '%s\n' "$out" > "$saved"
printf '{"cmd": "CMD", "saved": "%s", "own_ns": %d, "argv": "%s"}\n' "$saved" \
  "$(((t1 - t0) * 1000))" "$*" >> "$FAKE_SLURM/calls.log"
exit $rc
"""


def bench_refresh_lab(n: int, nice: int = 0) -> None:
    """(b) on the lab cluster: an n-element array runs while refreshes (each in a fresh
    process) ask the real sacct, through a wrapper that counts rows; each is compared with
    the same sacct argv run alone right after. ``nice`` < 0 (root): the refresh ahead of the
    lab's daemons and jobs on the machine's cores, as on a login node that runs neither."""
    import os

    with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
        d = Path(tmp)
        site = _site_in(d, **{"max_array_size: null": "max_array_size: 10001"})
        (d / "bin").mkdir()
        for cmd in ("sacct", "squeue"):
            (d / "bin" / cmd).write_text(SACCT_WRAPPER.replace("CMD", cmd))
            os.chmod(d / "bin" / cmd, 0o755)
        env = {**os.environ, "PYTHONPATH": str(REPO), "FAKE_SLURM": tmp,
               "HPCFLOW_DB": str(d / "t.db"), "PATH": f"{d}/bin:{os.environ['PATH']}"}  # fmt: skip
        wf = d / "wf.yaml"
        wf.write_text(LAB_WF)
        argv = [sys.executable, "-m", "hpcflow", "--site", str(site), "submit", str(wf), "--set",
                f"n={n}", "--json"]  # fmt: skip
        sub = json.loads(subprocess.run(argv, env=env, capture_output=True, text=True,
                                        check=True).stdout)  # fmt: skip
        _calls(d)
        print(f"lab cluster, real sacct, {n} elements of `true` in one array, refreshed while")
        print("it runs (the drain is ~17-20 tasks/s); sacct s: the refresh's own sacct call,")
        print("timed by the wrapper around it; whole s: a plain `sacct -X` of the jobs of the")
        print("unfinished elements, run right after; ratios: refresh wall / each")
        if nice:
            print(f"the refresh process runs at niceness {nice}")
        print(REFRESH_HEAD)
        ratios, wholes, slurm = [], [], []
        while True:
            r = _refresh_once(d, sub["run_id"], env, "/usr/bin/sacct", nice)
            if r["bare_s"]:
                ratios.append(r["wall_s"] / r["bare_s"])
            if r["whole_s"]:
                wholes.append(r["wall_s"] / r["whole_s"])
            if r["bare_s"] + r["squeue_s"]:
                slurm.append(r["wall_s"] / (r["bare_s"] + r["squeue_s"]))
            label = f"running, squeue {r['squeue_s']:.3f} s" if r["tracked"] else "after: done"
            if r["usage_rows"]:
                label = f"{label[:16]}, usage {r['usage_rows']} rows"
            _refresh_row(label, n, r)
            if not r["tracked"]:
                break
            time.sleep(5)
        for name, got in (("its own sacct calls", ratios), ("sacct -X of the whole jobs", wholes),
                          ("its own sacct and squeue calls", slurm)):  # fmt: skip
            got.sort()
            print(f"refresh wall / {name}, over {len(got)} refreshes: median "
                  f"{got[len(got) // 2]:.2f}, max {got[-1]:.2f}")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument(
        "what",
        choices=["compile", "chain", "tracker", "pack", "latency", "refresh", "refresh-lab", "all"],
    )
    ap.add_argument("--sizes", default="1000,10000,52000,100000", help="refresh: run sizes")
    ap.add_argument("--pack", type=int, default=125, help="pack: elements per task")
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--against", help="tracker, refresh: also measure this checkout, same run")
    ap.add_argument("--elements", type=int, default=100_000, help="tracker: run size")
    ap.add_argument("--nice", type=int, default=0, help="refresh-lab: the refresh's niceness")
    ap.add_argument("--against-first", action="store_true",
                    help="refresh: measure the --against checkout before this one")  # fmt: skip
    a = ap.parse_args()
    if a.what in ("compile", "all"):
        bench_compile()
    if a.what in ("tracker", "all"):
        bench_tracker(a.against, a.elements)
    if a.what in ("chain", "all"):
        bench_chain(a.n)
    if a.what in ("latency", "all"):
        bench_latency(a.elements)
    if a.what in ("refresh", "all"):
        bench_refresh([int(x) for x in a.sizes.split(",")], a.against, a.against_first)
    if a.what == "refresh-lab":
        bench_refresh_lab(a.n if a.n != 200 else 5000, a.nice)
    if a.what in ("pack", "all"):
        bench_pack(a.n if a.n != 200 else 2000, a.pack)


if __name__ == "__main__":
    main()
