"""`hpcflow sites init NAME`: a site config written from the live cluster, for the user to edit.
Partitions (default, time limit, node CPUs and memory, GPUs and their type from gres) come from
sinfo; MaxArraySize and the cluster name from `scontrol show config`; the user's default account
from sacctmgr; the submit limits that apply are written as comments (hpcflow reads them live)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from hpcflow.errors import SlurmUnavailable
from hpcflow.runners.base import Runner
from hpcflow.slurm.commands import SINFO_ARGV
from hpcflow.slurm.limits import fetch, submit_limit


def user_argv(user: str) -> list[str]:
    return ["sacctmgr", "-n", "-P", "show", "user", user, "format=User,DefaultAccount"]


@dataclass
class PartitionInfo:
    default: bool = False
    max_time: str | None = None
    cpus: int = 0
    mem_mb: int = 0
    gpus: int = 0
    gpu_type: str | None = None


def _num(x: str) -> int:
    m = re.match(r"\d+", x.strip())
    return int(m.group()) if m else 0


def parse_partitions(text: str) -> dict[str, PartitionInfo]:
    """sinfo '%P|%G|%l|%c|%m' (SINFO_ARGV) -> partitions (the largest node of each; '*' marks the
    default; a time limit of 'infinite' is no limit)."""
    out: dict[str, PartitionInfo] = {}
    for line in text.splitlines():
        f = (line.split("|") + [""] * 5)[:5]
        if not f[0].strip():
            continue
        name = f[0].strip().rstrip("*")
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
            continue  # not a name a site config can hold as a plain YAML key
        p = out.setdefault(name, PartitionInfo())
        p.default = p.default or f[0].strip().endswith("*")
        if f[2] and f[2] not in ("infinite", "UNLIMITED", "n/a"):
            p.max_time = f[2]
        p.cpus, p.mem_mb = max(p.cpus, _num(f[3])), max(p.mem_mb, _num(f[4]))
        for m in re.finditer(r"gpu(?::([A-Za-z0-9_.-]+))?:(\d+)", f[1]):
            if int(m.group(2)) > p.gpus:
                p.gpus, p.gpu_type = int(m.group(2)), m.group(1)
    return out


def site_yaml(
    name: str,
    parts: dict[str, PartitionInfo],
    max_array_size: int | None,
    cluster: str,
    account: str | None,
    limit_notes: list[str],
) -> str:
    lines = [
        f"# hpcflow site config for cluster {cluster!r}, written by `hpcflow sites init` from",
        "# sinfo, scontrol and sacctmgr. Edit it: scratch, results, containers, modules.",
        "# Check it with `hpcflow sites check FILE`.",
        f"name: {name}",
        f"account: {account}" if account else "account: null  # no default account found",
        "login:",
        "  host: null  # null = Slurm commands run here; a host name = over SSH",
        "partitions:",
    ]
    for pname, p in sorted(parts.items()):
        fields = [f"default: {'true' if p.default else 'false'}"]
        fields.append(f"max_time: {p.max_time!r}" if p.max_time else "max_time: null")
        fields += [f"cpus: {p.cpus}", f"mem: {p.mem_mb}M", f"gpus: {p.gpus}"]
        if p.gpu_type:
            fields.append(f"gpu_type: {p.gpu_type}")
        lines.append(f"  {pname}: {{{', '.join(fields)}}}")
    lines += [
        "limits:",
        f"  max_array_size: {max_array_size or 'null'}  # MaxArraySize",
        "  # null: hpcflow reads your submit limit from Slurm (cached for cache_ttl); it was:",
        *[f"  #   {n}" for n in limit_notes],
        "  max_submit_jobs: null",
        "  min_task_time: 5m  # pack: auto makes array tasks at least this long",
        "paths:",
        "  scratch: /scratch/{user}  # EDIT: the shared (Lustre) scratch all nodes see",
        "  results: null",
        "containers:",
        "  runtime: none  # apptainer, singularity or charliecloud when steps use containers",
        "tracker:",
        "  poll_interval: 60s",
    ]
    return "\n".join(lines) + "\n"


def init_site(runner: Runner, name: str, user: str) -> str:
    """The site config text, from the live cluster."""
    res = runner.run(SINFO_ARGV, timeout=30)
    if not res.ok:
        raise SlurmUnavailable(f"sinfo failed: {res.stderr.strip()}")
    parts = parse_partitions(res.stdout)
    res = runner.run(user_argv(user), timeout=30)
    account = None
    if res.ok and res.stdout.strip():
        account = res.stdout.strip().splitlines()[0].split("|")[-1] or None
    cl = fetch(runner, user)
    notes = []
    for a in cl.assocs:  # every account you may use (the default is `account:` above)
        qos = ",".join(a.qos) or "none"
        notes.append(
            f"account {a.account}{' partition ' + a.partition if a.partition else ''}: "
            f"MaxSubmit {a.max_submit or '-'}, MaxJobs {a.max_jobs or '-'}, "
            f"GrpSubmit {a.grp_submit or '-'}, QOS {qos}"
        )
        for q in a.qos:
            lim = submit_limit(cl, a.account, q)
            notes.append(f"  with --qos={q}: at most {lim.limit} queued ({lim.source})")
    notes += [f"(not read: {e})" for e in cl.errors]
    return site_yaml(name, parts, cl.max_array_size, cl.cluster or "?", account, notes)
