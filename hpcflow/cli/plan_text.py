"""`validate --site` as text: what would be submitted, and whether it fits."""

from __future__ import annotations


def report_text(r: dict) -> str:
    lim = r["limits"]
    lines = [
        f"on site {r['site']}: {r['sbatch_calls']} sbatch call(s), {r['array_tasks']} array "
        f"task(s) for {r['elements']} element(s), about {r['files_estimate']} files and "
        "directories on scratch"
    ]
    for name, st in r["steps"].items():
        pk = st["pack"]
        pack = f", pack {pk['size']} ({pk['parallel']} at once)" if pk["size"] > 1 else ""
        why = f" [{pk['why']}]" if pk["why"] else ""
        lines.append(
            f"  {name}: {st['elements']} element(s) in {st['array_tasks']} task(s), "
            f"{st['sbatch_calls']} sbatch call(s){pack}{why}"
        )
    mas = lim["max_array_size"] or "unknown"
    if lim["submit_limit"] is None:
        lines.append(f"limits: MaxArraySize {mas}; no submit limit found")
    else:
        verdict = "fits" if r.get("tasks_fit", r["fits"]) else "does NOT fit"
        lines.append(
            f"limits: MaxArraySize {mas}; {r['array_tasks']} queued task(s) against a limit of "
            f"{lim['submit_limit']} ({lim['submit_limit_source']}): {verdict}"
        )
    calls, max_calls = r["sbatch_calls"], lim.get("max_sbatch_calls")
    if max_calls is not None and not r.get("calls_fit", True):
        lines.append(
            f"sbatch calls: {calls:,}, over the site's limits.max_sbatch_calls {max_calls:,} "
            f"(each is a request to slurmctld; about {calls * 15 / 1000 / 60:.0f} min of "
            "submitting at the lab's 15 ms each, and one Slurm job each to track): does NOT fit"
        )
    sug = r["suggest_pack"]
    if sug:
        lines.append(
            f"  pack: {sug['pack']} on {', '.join(sug['steps'])} would make it "
            f"{sug['array_tasks']} task(s) in {sug.get('sbatch_calls', '?')} sbatch call(s)"
        )
    elif not r["fits"]:
        lines.append("  no pack size fits: the run has more plain jobs than the limit")
    for e in lim["unreadable"]:
        lines.append(f"  (not read from Slurm: {e})")
    return "\n".join(lines)
