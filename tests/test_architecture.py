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


# where a file may be opened to read other than through util/safeio.py: the job tool runs on
# compute nodes with the stdlib only (its own files, in the job's directory); the SSH runner
# reads the login host's files over SFTP, after the same checks (regular, bounded, inside)
OWN_READERS = {"util/safeio.py", "node/jobtool.py", "runners/ssh.py"}


def _reads(tree: ast.AST) -> list[int]:
    """Lines that open a file to read: open(...) without a write mode, .read_text(),
    .read_bytes(), Path.open() without a write mode, os.open without O_WRONLY/O_RDWR."""

    def mode_of(call: ast.Call, pos: int) -> str:
        for a in call.args[: pos + 2]:  # Path.open(mode), open(path, mode), sftp.open(path, mode)
            if isinstance(a, ast.Constant) and re.fullmatch(r"[rwxabt+]{1,3}", str(a.value)):
                return str(a.value)
        for k in call.keywords:
            if k.arg == "mode" and isinstance(k.value, ast.Constant):
                return str(k.value.value)
        return "r"

    def is_read(n: ast.Call) -> bool:
        f = n.func
        if isinstance(f, ast.Name):
            return f.id == "open" and not set(mode_of(n, 1)) & set("wxa")
        if not isinstance(f, ast.Attribute):
            return False
        if f.attr in ("read_text", "read_bytes"):
            return True
        if f.attr != "open":
            return False
        if isinstance(f.value, ast.Name) and f.value.id == "os":
            flags = ast.unparse(n)
            return "O_WRONLY" not in flags and "O_RDWR" not in flags
        return not set(mode_of(n, 0)) & set("wxa")

    return [n.lineno for n in ast.walk(tree) if isinstance(n, ast.Call) and is_read(n)]


def test_files_are_read_only_through_safeio() -> None:
    """Every read of a file on the login node goes through util/safeio.py (regular files
    only, never blocking on a FIFO, bounded before it is read): docs/security.md."""
    found = [
        f"{p.relative_to(PKG.parent)}:{line}"
        for p in sorted(PKG.rglob("*.py"))
        if str(p.relative_to(PKG)) not in OWN_READERS
        for line in _reads(ast.parse(p.read_text()))
    ]
    assert found == [], "read these through hpcflow.util.safeio (or a Runner): " + ", ".join(found)


def test_the_read_rule_sees_the_reads_it_forbids() -> None:
    src = ("open(p)\nopen(p, 'rb')\nPath(p).read_text()\nx.read_bytes()\np.open()\n"
           "os.open(p, os.O_RDONLY)\nopen(p, 'w')\nos.open(p, os.O_WRONLY)\n")  # fmt: skip
    assert _reads(ast.parse(src)) == [1, 2, 3, 4, 5, 6]


def _module_of(p: Path) -> str:
    rel = p.relative_to(PKG.parent).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def import_graph(pkg: Path = PKG) -> dict[str, set[str]]:
    """Every hpcflow module -> the hpcflow modules it imports, anywhere in it (a function's
    lazy import and a TYPE_CHECKING import count: both are a dependency of the design)."""
    mods = {_module_of(p): p for p in pkg.rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for m, p in mods.items():
        for node in ast.walk(ast.parse(p.read_text())):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            for n in names:
                if n in mods and n != m and not m.startswith(n + "."):  # a package's own parent
                    graph[m].add(n)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles() -> None:
    """Imports go one way, between packages and inside them (docs/architecture.md)."""
    assert cycles(import_graph()) == []


def test_the_cycle_check_sees_a_cycle() -> None:
    g = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert cycles(g) == [["a", "b", "c"]]


SQL_TEXT = re.compile(r"^\s*(SELECT|UPDATE|INSERT|DELETE|CREATE|ALTER|DROP|PRAGMA|BEGIN)\s")
SQL_CALLS = {"execute", "executemany", "executescript", "exec_driver_sql", "exec"}
SQL_LIBS = {"sqlite3", "sqlalchemy", "sqlmodel"}
# Modules that run SQL of their own outside hpcflow/store/: none (the list may only shrink).
NOT_YET_IN_STORE: set[str] = set()


def sql_uses(tree: ast.AST) -> list[tuple[int, str]]:
    """SQL text, calls that run a statement, and imports of a database library."""
    out = []
    for n in ast.walk(tree):
        if isinstance(n, ast.Constant) and isinstance(n.value, str) and SQL_TEXT.match(n.value):
            out.append((n.lineno, n.value.split()[0]))
        elif isinstance(n, ast.JoinedStr) and n.values:
            first = n.values[0]
            if isinstance(first, ast.Constant) and SQL_TEXT.match(str(first.value)):
                out.append((n.lineno, str(first.value).split()[0]))
        elif isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute):
            if n.func.attr in SQL_CALLS:
                out.append((n.lineno, f".{n.func.attr}()"))
        elif isinstance(n, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in n.names] if isinstance(n, ast.Import) else [n.module or ""]
            out += [(n.lineno, f"import {m}") for m in names
                    if m.split(".")[0] in SQL_LIBS and m != "sqlalchemy.engine"]  # fmt: skip
    return sorted(set(out))  # the engine's type (a handle to pass on) is no SQL of its own


def test_only_the_store_runs_sql() -> None:
    """Every SQL statement lives in hpcflow/store/ (the schema, the readers and writers,
    typed records): no SQL text, no statement run and no database library outside it (the
    Engine type aside, a handle passed on). Others use store functions and the store's
    models in a store session (get, add, commit)."""
    runs_sql = {
        str(p.relative_to(PKG)): sql_uses(ast.parse(p.read_text()))
        for p in sorted(PKG.rglob("*.py"))
        if p.relative_to(PKG).parts[0] != "store"
    }
    outside = {m: u for m, u in runs_sql.items() if u and m not in NOT_YET_IN_STORE}
    assert outside == {}, "run SQL in hpcflow/store/ only:\n" + "\n".join(
        f"{m}:{line}: {what}" for m, uses in outside.items() for line, what in uses
    )
    assert sorted(m for m in NOT_YET_IN_STORE if not runs_sql.get(m)) == []


def test_the_sql_check_sees_statements_calls_and_imports() -> None:
    bad = ast.parse(
        'import sqlite3\nq = "SELECT 1 FROM task"\nc.execute(q)\nd = f"UPDATE task SET {x}"\n'
        "from sqlmodel import select\n"
    )
    ok = ast.parse('msg = "select a site with --site"\nnote = "update the file"\n')
    assert [w for _, w in sql_uses(bad)] == [
        "import sqlite3", "SELECT", ".execute()", "UPDATE", "import sqlmodel",
    ]  # fmt: skip
    assert sql_uses(ok) == []


SYNTHETIC = {"CLEANUP_STEP", "PULL_STEP", "EXPAND_STEP", "RESERVED_STEPS"}
# where a reserved name may be compared: the workflow check that refuses it for a user's step
NAME_CHECKS = {"spec/validate.py"}


def name_decisions(tree: ast.AST) -> list[int]:
    """Comparisons of a step name with one of hpcflow's own steps' names (==, !=, in)."""
    out = []
    for n in ast.walk(tree):
        if isinstance(n, ast.Compare):
            parts = [n.left, *n.comparators]
            names = {x.id for p in parts for x in ast.walk(p) if isinstance(x, ast.Name)}
            if names & SYNTHETIC:
                out.append(n.lineno)
    return out


def test_roles_are_data_not_names() -> None:
    """hpcflow's own steps (cleanup, pull, expand) are told apart by their kind
    (states.StepKind, set where they are made), never by comparing their names."""
    found = [
        f"{p.relative_to(PKG)}:{line}"
        for p in sorted(PKG.rglob("*.py"))
        if str(p.relative_to(PKG)) not in NAME_CHECKS
        for line in name_decisions(ast.parse(p.read_text()))
    ]
    assert found == [], "decide by StepPlan.kind / StepRow.kind:\n" + "\n".join(found)
    assert name_decisions(ast.parse("if name == CLEANUP_STEP: pass")) == [1]


HANDLE_NAMES = {"conn", "db", "s", "session", "cur", "engine", "handle"}


def untyped_handles(tree: ast.AST) -> list[int]:
    """Parameters named as database handles are, annotated ``Any``."""
    return sorted(
        a.lineno
        for f in ast.walk(tree)
        if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
        for a in f.args.args + f.args.kwonlyargs
        if a.arg in HANDLE_NAMES and isinstance(a.annotation, ast.Name) and a.annotation.id == "Any"
    )


def test_database_handles_are_typed() -> None:
    """A function that takes the tracker says which handle (store/handles.py: Orm, Sql,
    Handle; sqlite3.Connection for the DB-API readers), so mypy sees a reader handed the
    wrong one."""
    found = [
        f"{p.relative_to(PKG)}:{line}"
        for p in sorted(PKG.rglob("*.py"))
        for line in untyped_handles(ast.parse(p.read_text()))
    ]
    assert found == [], "type the handle (hpcflow/store/handles.py):\n" + "\n".join(found)
    assert untyped_handles(ast.parse("def f(conn: Any, s: Orm, db: Any = None): pass")) == [1, 1]
