"""Rules of the code's shape that import-linter cannot see (docs/architecture.md)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "hpcflow"
SLURM_COMMANDS = {
    "sbatch", "sacct", "squeue", "scancel", "scontrol", "sinfo", "srun", "salloc", "sacctmgr",
}  # fmt: skip


def argv_literals(tree: ast.AST) -> list[tuple[int, str]]:
    """String constants that are a Slurm command name, as an argv element is, or a command
    line with options ("sacct -X ..."); prose and docstrings that name one are not flagged."""
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    out = []
    for n in ast.walk(tree):
        if id(n) in docstrings:
            continue
        if isinstance(n, ast.Constant) and isinstance(n.value, str):
            words = n.value.split()
            options = [w for w in words[1:] if re.fullmatch(r"--?[A-Za-z][\w=,-]*", w)]
            if words and words[0] in SLURM_COMMANDS and (len(words) == 1 or options):
                out.append((n.lineno, n.value))
    return sorted(out)


def test_only_the_slurm_package_names_slurm_commands() -> None:
    found = [
        f"{p.relative_to(PKG.parent)}:{line}: {text!r}"
        for p in sorted(PKG.rglob("*.py"))
        if p.relative_to(PKG).parts[0] != "slurm"
        for line, text in argv_literals(ast.parse(p.read_text()))
    ]
    assert found == [], "build Slurm argv in hpcflow/slurm/commands.py:\n" + "\n".join(found)


def test_the_check_sees_an_argv_built_by_hand() -> None:
    bad = ast.parse('argv = ["squeue", "-h", "-u", user]\nline = "sacct -X -j 12"\n')
    ok = ast.parse('"""sbatch every planned job"""\nmsg = "sacct answers again"\n'
                   'def f():\n    """sacct -X for these jobs"""\n')  # fmt: skip
    assert [t for _, t in argv_literals(bad)] == ["squeue", "sacct -X -j 12"]
    assert argv_literals(ok) == []


def test_modules_stay_small() -> None:
    """~400 lines a module; the job tool is exempt (one self-contained file on compute nodes)."""
    big = [
        f"{p.relative_to(PKG.parent)}: {n} lines"
        for p in sorted(PKG.rglob("*.py"))
        if p.name != "jobtool.py" and (n := len(p.read_text().splitlines())) > 420
    ]
    assert big == []


def test_tracker_functions_stay_short() -> None:
    long = []
    for p in sorted((PKG / "tracker").glob("*.py")):
        for n in ast.walk(ast.parse(p.read_text())):
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = (n.end_lineno or n.lineno) - n.lineno + 1
                if length > 60:
                    long.append(f"{p.name}:{n.lineno} {n.name}: {length} lines")
    assert long == []
