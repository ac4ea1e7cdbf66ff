"""Remote images (docker://, oras://, library://): where they are cached, the commands that pull
them, and registry credentials. Pure functions; the pull runs in a job (or on the login node)
that the container steps depend on, once per run and image, never once per element.

Credentials (APPTAINER_DOCKER_USERNAME / _PASSWORD, or a 0600 file named in the site config)
reach only the pull command: every other command hpcflow runs, sbatch included, gets an
environment without them (runner.py), and they are never written to scripts, logs, the
database or the run directory. See docs/containers.md.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat

from hpcflow.containers.runtimes import is_remote
from hpcflow.errors import HpcflowError
from hpcflow.util import secrets
from hpcflow.util.safeio import read_bounded

SECRET_NAMES = secrets.SECRET_NAMES  # util/secrets.py


def cache_path(cache: str, ref: str, runtime: str) -> str:
    """<cache>/<readable name>-<hash of the full reference>.sif (a directory for Charliecloud).
    The same reference always maps to the same path, so runs share the cache."""
    tail = ref.split("://", 1)[-1].rsplit("/", 1)[-1]
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", tail)[:60] or "image"
    digest = hashlib.sha256(ref.encode()).hexdigest()[:12]
    ext = ".img" if runtime == "charliecloud" else ".sif"
    return f"{cache.rstrip('/')}/{slug}-{digest}{ext}"


def check_ref(ref: str, runtime: str) -> str | None:
    """A problem with pulling ``ref`` under ``runtime``, or None."""
    if any(c in ref for c in "\n\0") or " " in ref:
        return f"image reference {ref!r} contains whitespace or control characters"
    if runtime == "charliecloud" and not ref.startswith("docker://"):
        return f"Charliecloud pulls docker:// references only, not {ref!r}"
    return None


def pull_script(runtime: str) -> str:
    """Bash that pulls image $1 to path $2 unless it is there: into a temporary name in the
    same directory, then renamed into place (rename(2) is atomic, so concurrent runs never
    see a half-written image; the loser of a race drops its copy)."""
    if runtime in ("apptainer", "singularity"):
        # `apptainer pull [options] [output file] <URI>`; --disable-cache: the SIF itself is
        # the cache (no per-user layer cache growing on shared scratch)
        pull = [f'{runtime} pull --disable-cache "$tmp" "$ref"']
    elif runtime == "charliecloud":
        pull = [
            'ch-image pull "${ref#docker://}"',
            'ch-convert -i ch-image -o dir "${ref#docker://}" "$tmp"',
        ]
    else:
        raise HpcflowError(f"runtime {runtime!r} cannot pull images")
    return "\n".join(
        [
            "set -euo pipefail",
            "ref=$1 dest=$2",
            'if [[ -e $dest ]]; then echo "hpcflow pull: $ref: cached at $dest"; exit 0; fi',
            'mkdir -p -- "${dest%/*}"',
            'tmp="$dest.tmp.${SLURM_JOB_ID:-$$}"',
            'rm -rf -- "$tmp"',
            *pull,
            'if ! mv -T -- "$tmp" "$dest" 2>/dev/null; then',
            '  [[ -e $dest ]] || { echo "hpcflow pull: cannot rename $tmp" >&2; exit 1; }',
            '  rm -rf -- "$tmp" # another run put it in place first',
            "fi",
            'echo "hpcflow pull: $ref -> $dest"',
        ]
    )


def remote_images(images: list[str]) -> list[str]:
    return sorted({i for i in images if is_remote(i)})


def read_credentials(path: str) -> dict[str, str]:
    """NAME=value lines (NAME one of SECRET_NAMES) from a file only its owner can read."""
    p = os.path.expanduser(path)
    try:
        st = os.stat(p)
    except OSError as e:
        raise HpcflowError(f"credentials file {p}: {e.strerror}") from e
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise HpcflowError(
            f"credentials file {p} is readable by others (mode {stat.S_IMODE(st.st_mode):04o}); "
            f"run `chmod 600 {p}`"
        )
    out: dict[str, str] = {}
    try:
        text = read_bounded(p, 64 * 1024).decode("utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise HpcflowError(f"credentials file {p}: {e}") from e
    for n, line in enumerate(text.split("\n"), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.partition("=")
        if not sep or name.strip() not in SECRET_NAMES:
            raise HpcflowError(
                f"credentials file {p}:{n}: expected NAME=value with NAME one of "
                f"{', '.join(SECRET_NAMES)}"
            )  # the line itself is not echoed: it may hold a secret
        out[name.strip()] = value.strip()
    return out


def credentials_from_env(env: dict[str, str] | os._Environ[str] = os.environ) -> dict[str, str]:
    return {k: env[k] for k in SECRET_NAMES if env.get(k)}
