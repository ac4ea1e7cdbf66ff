"""Container runtimes behind one interface: pure functions that build the shell lines a job
script uses to run the step's command in a container. Nothing here runs anything.

Every runtime gets the same contract: a clean environment (host variables do not leak in)
holding exactly the variables hpcflow passes, the run directory bound at the same path (so
`task_dir` and `upstream.*.task_dir` mean the same inside), the workflow directory bound, the
site's extra binds, the element's directory as working directory, and the GPU flag for steps
that request GPUs. See docs/containers.md for what was run for real.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field

RUNTIMES = ("apptainer", "singularity", "charliecloud", "none")
REMOTE = ("docker://", "oras://", "library://", "shub://", "http://", "https://")


@dataclass(frozen=True)
class Bind:
    src: str
    dst: str
    opts: str = ""  # "ro" or "rw" (apptainer/singularity); charliecloud binds have no options
    runtime: bool = False  # src is "${VAR}/suffix", expanded by the job script at run time

    def word(self, spec: str) -> str:
        """The bind as one shell word: quoted, with a run-time source left to expand."""
        if not self.runtime:
            return shlex.quote(spec)
        rest = spec[len(self.src) :]
        return f'"{self.src}"' + shlex.quote(rest)

    @classmethod
    def parse(cls, spec: str) -> Bind:
        """'src[:dst[:opts]]' as in the site config and Apptainer's --bind."""
        parts = spec.split(":")
        if not parts[0] or len(parts) > 3 or any(c in spec for c in ",\n\0"):
            raise ValueError(f"bad bind {spec!r} (use src[:dst[:opts]])")
        src = parts[0]
        dst = parts[1] if len(parts) > 1 and parts[1] else src
        opts = parts[2] if len(parts) > 2 else ""
        if opts not in ("", "ro", "rw"):
            raise ValueError(f"bad bind option {opts!r} in {spec!r} (ro or rw)")
        return cls(src, dst, opts)


@dataclass(frozen=True)
class Launch:
    """What the job script needs: lines to run first, then the words that precede the
    in-container command."""

    prelude: list[str] = field(default_factory=list)
    argv: list[str] = field(default_factory=list)  # shell words, already quoted


def is_remote(image: str) -> bool:
    return image.startswith(REMOTE)


def _ref(name: str) -> str:
    return f'"${{{name}}}"'


def launch(
    runtime: str,
    image: str,
    *,
    binds: list[Bind],
    env_names: list[str],
    workdir_var: str,
    gpu: bool,
    gpu_flag: str = "--nv",
) -> Launch:
    """Build the container launch for one step. ``env_names`` are shell variables already set
    in the job script whose values the container must see; ``workdir_var`` names the variable
    holding the working directory. Values travel by reference, never pasted into the command."""
    q = shlex.quote
    if runtime == "none":
        return Launch()
    if runtime in ("apptainer", "singularity"):
        prefix = "APPTAINERENV_" if runtime == "apptainer" else "SINGULARITYENV_"
        # --cleanenv drops the host environment; <PREFIX>NAME variables are still applied,
        # and keep the values off the command line (not visible in ps).
        prelude = [f"export {prefix}{n}={_ref(n)}" for n in env_names]
        argv = [runtime, "exec", "--cleanenv"]
        for b in binds:
            spec = f"{b.src}:{b.dst}" + (f":{b.opts}" if b.opts else "")
            argv += ["--bind", b.word(spec)]
        argv += ["--pwd", _ref(workdir_var)]
        if gpu and gpu_flag:
            argv.append(q(gpu_flag))
        argv.append(q(image))
        return Launch(prelude, argv)
    if runtime == "charliecloud":
        # ch-run refuses to start without $USER, which batch jobs may lack.
        prelude = ['export USER="${USER:-$(id -un)}"']
        argv = ["ch-run", "--unset-env='*'", "--env-no-expand"]
        argv += [f"--set-env={n}={_ref(n)}" for n in env_names]
        for b in binds:
            argv += ["-b", b.word(f"{b.src}:{b.dst}")]
        argv += ["-c", _ref(workdir_var), q(image), "--"]
        return Launch(prelude, argv)
    raise ValueError(f"unknown container runtime {runtime!r} (one of {', '.join(RUNTIMES)})")
