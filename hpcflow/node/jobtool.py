"""The only hpcflow code that runs on compute nodes. Standard library only: it is copied into
each run directory (scripts/hpcflow_job.py) and run by the site's python, so compute nodes
need no hpcflow install.

It holds the `when:` expression language (parsed at compile time, evaluated at element start)
and the per-element helpers the job script calls:

    python3 hpcflow_job.py when SPEC.json        exit 0 = true, 10 = false, anything else =
                                                 error (Python itself exits 1 on a crash or a
                                                 SyntaxError, so 1 must never mean false)
    python3 hpcflow_job.py manifest SPEC.json    writes manifest.json into $HPCFLOW_TASK_DIR
    python3 hpcflow_job.py outputs SPEC.json     copies declared outputs to the results dir
    python3 hpcflow_job.py ffrd-config SRC DST   substitutes {ENV::NAME} in a JSON config
    python3 hpcflow_job.py pack N --tasks F ID   runs task ID's element lines of tasks file F,
                                                 up to N at once (each one's peak memory)

The language (docs/conditions.md): literals (numbers, 'strings', "strings", true, false,
null, [lists]), names (params.x, item.x, index, upstream.s.state | exit_code | outputs.k),
comparisons (== != < <= > >=, in, not in), and, or, not, parentheses. No calls, no
attributes beyond dotted names, no Python eval.
"""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import sys
from typing import Any, List, Optional

Ast = List[Any]  # noqa: UP006 (runs on the site's python, 3.7+)

# -- the run directory's layout (docs/scratch-layout.md): this module owns it; the rest of
# hpcflow imports it from here, and the job template gets SHARD as a value ----------------
SHARD = 1000  # at most ~1,000 entries per directory, as Lustre's metadata servers want


def task_dir(run_dir: str, step: str, index: int, shard: int = SHARD) -> str:
    """The element's own directory."""
    return f"{run_dir}/steps/{step}/{index // shard}/{index}"


def log_path(run_dir: str, step: str, index: int, stream: str = "out", shard: int = SHARD) -> str:
    """The element's stdout (``out``) or stderr (``err``) log."""
    return f"{run_dir}/logs/{step}/{index // shard}/{index}.{stream}"


def item_of(axes: dict[str, list[Any]], idx: int) -> dict[str, Any]:
    """Element index -> its value on every axis (cartesian product, last axis fastest)."""
    out = []
    for values in reversed(list(axes.values())):
        idx, r = divmod(idx, len(values))
        out.append(values[r])
    return dict(zip(axes, reversed(out)))


_TOKEN = re.compile(
    r"""\s*(?:
    (?P<num>-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)
    |(?P<str>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
    |(?P<op>==|!=|<=|>=|<|>|\(|\)|\[|\]|,)
    |(?P<name>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_-]*)*)
    )""",
    re.VERBOSE,
)
KEYWORDS = {"and", "or", "not", "in", "true", "false", "null"}
COMPARE = ("==", "!=", "<=", ">=", "<", ">", "in", "not in")


class ExprError(ValueError):
    """A condition that cannot be parsed or evaluated; the message says where and why."""


def tokenize(text: str) -> list[tuple[str, Any, int]]:
    out: list[tuple[str, Any, int]] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise ExprError(f"unexpected {text[pos:].strip()[:20]!r} at column {pos + 1}")
        kind = m.lastgroup
        raw = m.group(kind)  # type: ignore[arg-type]
        col = m.start(kind) + 1  # type: ignore[arg-type]
        if kind == "num":
            out.append(("lit", float(raw) if any(c in raw for c in ".eE") else int(raw), col))
        elif kind == "str":
            body = raw[1:-1]
            out.append(("lit", re.sub(r"\\(.)", r"\1", body), col))
        elif kind == "op":
            out.append(("op", raw, col))
        elif raw in ("true", "false", "null"):
            out.append(("lit", {"true": True, "false": False, "null": None}[raw], col))
        elif raw in KEYWORDS:
            out.append(("op", raw, col))
        else:
            out.append(("name", raw, col))
        pos = m.end()
    return out


class _Parser:
    def __init__(self, text: str):
        self.toks = tokenize(text)
        self.i = 0

    def peek(self) -> tuple[str, Any, int] | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def is_op(self, *ops: str) -> bool:
        t = self.peek()
        return t is not None and t[0] == "op" and t[1] in ops

    def take(self) -> tuple[str, Any, int]:
        t = self.peek()
        if t is None:
            raise ExprError("the condition ends too early")
        self.i += 1
        return t

    def expect(self, op: str) -> None:
        t = self.take()
        if t[0] != "op" or t[1] != op:
            raise ExprError(f"expected {op!r} at column {t[2]}, found {t[1]!r}")

    def parse(self) -> Ast:
        if not self.toks:
            raise ExprError("the condition is empty")
        node = self.or_()
        t = self.peek()
        if t is not None:
            raise ExprError(f"unexpected {t[1]!r} at column {t[2]}")
        return node

    def or_(self) -> Ast:
        node = self.and_()
        while self.is_op("or"):
            self.take()
            node = ["or", node, self.and_()]
        return node

    def and_(self) -> Ast:
        node = self.not_()
        while self.is_op("and"):
            self.take()
            node = ["and", node, self.not_()]
        return node

    def not_(self) -> Ast:
        if self.is_op("not"):
            self.take()
            return ["not", self.not_()]
        return self.cmp()

    def cmp(self) -> Ast:
        left = self.atom()
        if self.is_op("==", "!=", "<=", ">=", "<", ">", "in"):
            op = self.take()[1]
        elif self.is_op("not") and self.i + 1 < len(self.toks) and self.toks[self.i + 1][1] == "in":
            self.i += 2
            op = "not in"
        else:
            return left
        right = self.atom()
        if self.is_op(*COMPARE[:-1]):
            raise ExprError(f"chained comparison at column {self.peek()[2]}: use and")  # type: ignore[index]
        return ["cmp", op, left, right]

    def atom(self) -> Ast:
        kind, val, col = self.take()
        if kind == "lit":
            return ["lit", val]
        if kind == "name":
            return ["name", val]
        if val == "(":
            node = self.or_()
            self.expect(")")
            return node
        if val == "[":
            items: list[Ast] = []
            while not self.is_op("]"):
                items.append(self.atom())
                if not self.is_op("]"):
                    self.expect(",")
            self.take()
            return ["list", items]
        raise ExprError(f"unexpected {val!r} at column {col}")


def parse(text: str) -> Ast:
    return _Parser(text).parse()


def names(node: Ast) -> list[str]:
    if node[0] == "name":
        return [node[1]]
    if node[0] == "list":
        return [n for x in node[1] for n in names(x)]
    if node[0] in ("and", "or"):
        return names(node[1]) + names(node[2])
    if node[0] == "not":
        return names(node[1])
    if node[0] == "cmp":
        return names(node[2]) + names(node[3])
    return []


def evaluate(node: Ast, lookup: Any) -> Any:
    tag = node[0]
    if tag == "lit":
        return node[1]
    if tag == "name":
        return lookup(node[1])
    if tag == "list":
        return [evaluate(x, lookup) for x in node[1]]
    if tag == "not":
        return not _truth(evaluate(node[1], lookup))
    if tag == "and":
        return _truth(evaluate(node[1], lookup)) and _truth(evaluate(node[2], lookup))
    if tag == "or":
        return _truth(evaluate(node[1], lookup)) or _truth(evaluate(node[2], lookup))
    op, a, b = node[1], evaluate(node[2], lookup), evaluate(node[3], lookup)
    if op == "==":
        return a == b
    if op == "!=":
        return a != b
    if op in ("in", "not in"):
        if not isinstance(b, (list, str, dict)):
            raise ExprError(f"`{op}` needs a list or a string on the right, got {b!r}")
        if isinstance(b, str) and not isinstance(a, str):
            raise ExprError(f"`{op}` a string needs a string on the left, got {a!r}")
        return (a in b) == (op == "in")
    num = (int, float)
    if not (
        (isinstance(a, num) and isinstance(b, num) and not isinstance(a, (bool, type(None))))
        or (isinstance(a, str) and isinstance(b, str))
    ):
        raise ExprError(f"cannot compare {a!r} {op} {b!r}: both must be numbers or strings")
    x: Any = a
    return {"<": x < b, "<=": x <= b, ">": x > b, ">=": x >= b}[op]


def _truth(v: Any) -> bool:
    if isinstance(v, bool):
        return v
    raise ExprError(f"{v!r} is not true or false: compare it (e.g. `== ...`)")


# --- run time -----------------------------------------------------------------------------


def _typed(text: str, kind: str) -> Any:
    if kind == "int":
        return int(text)
    if kind == "float":
        return float(text)
    if kind == "bool":
        return text == "true"
    return text


def _read_json(path: str) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise ExprError(f"cannot read {path}: {e}") from e


def element_result(task_dir: str) -> dict[str, Any]:
    """What an element's wrapper recorded; NOT_RUN when it never finished normally."""
    res = _read_json(os.path.join(task_dir, ".hpcflow", "result.json"))
    return res if isinstance(res, dict) else {"state": "NOT_RUN", "exit_code": None}


def make_lookup(spec: dict[str, Any], env: Any = os.environ) -> Any:
    cache: dict[str, Any] = {}

    def lookup(name: str) -> Any:
        parts = name.split(".")
        head = parts[0]
        if head == "params":
            v: Any = spec["params"]
            for p in parts[1:]:
                if not isinstance(v, dict) or p not in v:
                    raise ExprError(f"{name}: no such parameter")
                v = v[p]
            return v
        if head == "item":
            axis = parts[1]
            return _typed(env[f"HPCFLOW_ITEM_{axis}"], spec["axes"][axis])
        if head == "index":
            return int(env["HPCFLOW_INDEX"])
        if head == "upstream":
            step, what = parts[1], parts[2]
            tdir = env.get(spec["upstreams"][step], "")
            if not tdir:
                raise ExprError(f"{name}: no matching {step} element for this element")
            if step not in cache:
                cache[step] = (element_result(tdir), _read_json(os.path.join(tdir, "outputs.json")))
            result, outputs = cache[step]
            if what in ("state", "exit_code"):
                return result.get(what)
            v = outputs
            for p in parts[3:]:
                if not isinstance(v, dict) or p not in v:
                    raise ExprError(
                        f"{name}: {tdir}/outputs.json "
                        + ("is missing" if outputs is None else f"has no {p!r}")
                    )
                v = v[p]
            return v
        raise ExprError(f"unknown name {name!r}")

    return lookup


WHEN_FALSE = 10  # an exit code Python never produces by itself


def cmd_when(spec_path: str) -> int:
    spec = _read_json(spec_path)
    if not spec:
        print(f"hpcflow: when: cannot read {spec_path}", file=sys.stderr)
        return 2
    try:
        value = evaluate(spec["ast"], make_lookup(spec))
        if not isinstance(value, bool):
            raise ExprError(f"the condition gave {value!r}, not true or false")
    except (ExprError, KeyError, ValueError) as e:
        print(f"hpcflow: when: {spec['text']}: {e}", file=sys.stderr)
        return 2
    print(f"hpcflow: when: {spec['text']} -> {'true' if value else 'false'}", file=sys.stderr)
    return 0 if value else WHEN_FALSE


def cmd_manifest(spec_path: str) -> int:
    """Fan-in: every element of every upstream, its item, directory, final state, outputs."""
    spec = _read_json(spec_path)
    run_dir, shard = spec["run_dir"], spec["shard"]
    doc: dict[str, Any] = {"upstreams": {}}
    for up in spec["upstreams"]:
        elements = []
        for idx in range(up["n"]):
            tdir = task_dir(run_dir, up["step"], idx, shard)
            res = element_result(tdir)
            outputs = _read_json(os.path.join(tdir, "outputs.json"))
            elements.append(
                {
                    "index": idx,
                    "item": item_of(up["axes"], idx),
                    "task_dir": tdir,
                    "state": res.get("state", "NOT_RUN"),
                    "exit_code": res.get("exit_code"),
                    "outputs": outputs,
                }
            )
        counts: dict[str, int] = {}
        for e in elements:
            counts[e["state"]] = counts.get(e["state"], 0) + 1
        doc["upstreams"][up["step"]] = {"states": counts, "elements": elements}
    dest = os.path.join(os.environ["HPCFLOW_TASK_DIR"], "manifest.json")
    with open(dest + ".tmp", "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=1)
    os.replace(dest + ".tmp", dest)
    return 0


def _inside(path: str, root: str) -> bool:
    real, base = os.path.realpath(path), os.path.realpath(root)
    return real == base or real.startswith(base + os.sep)


def cmd_outputs(spec_path: str) -> int:
    """Copy the element's declared outputs (globs relative to task_dir) to the results dir.
    Matches that resolve outside the element's directory (symlinks) are refused."""
    spec = _read_json(spec_path)
    tdir = os.environ["HPCFLOW_TASK_DIR"]
    idx = int(os.environ["HPCFLOW_INDEX"])
    dest_root = f"{spec['results']}/{idx // spec['shard']}/{idx}"
    n, refused = 0, 0
    for pattern in spec["globs"]:
        for path in sorted(glob.glob(os.path.join(glob.escape(tdir), pattern), recursive=True)):
            rel = os.path.relpath(path, tdir)
            if not _inside(path, tdir) or rel.startswith(".."):
                print(f"hpcflow: outputs: {rel} leaves the element's directory", file=sys.stderr)
                refused += 1
                continue
            if os.path.isdir(path):
                continue
            dest = os.path.join(dest_root, rel)
            os.makedirs(os.path.dirname(dest), mode=0o750, exist_ok=True)
            shutil.copyfile(path, dest + ".tmp")
            os.replace(dest + ".tmp", dest)
            n += 1
    print(f"hpcflow: outputs: {n} file(s) copied to {dest_root}", file=sys.stderr)
    return 1 if refused else 0


_ENV_REF = re.compile(r"\{ENV::([A-Za-z_][A-Za-z0-9_]*)\}")


def cmd_ffrd_config(src: str, dst: str) -> int:
    """Cloud Compute style {ENV::NAME} substitution of a JSON config, per element."""
    with open(src, encoding="utf-8") as f:
        text = f.read()
    missing = sorted({m for m in _ENV_REF.findall(text) if m not in os.environ})
    if missing:
        print(f"hpcflow: {src}: unset variable(s) {', '.join(missing)}", file=sys.stderr)
        return 2
    out = _ENV_REF.sub(lambda m: json.dumps(os.environ[m.group(1)])[1:-1], text)
    try:
        json.loads(out)
    except ValueError as e:
        print(f"hpcflow: {src}: not valid JSON after substitution: {e}", file=sys.stderr)
        return 2
    with open(dst + ".tmp", "w", encoding="utf-8") as f:
        f.write(out)
    os.replace(dst + ".tmp", dst)
    return 0


# -- a tasks file's line: "<task id><TAB>export HPCFLOW_INDEX=<i> NAME=word ..." (one writer,
# one reader; the job script's awk selects a task's lines, its eval runs one) -------------
_LINE_HEAD = "export HPCFLOW_INDEX="


def task_line(task_id: int, index: int, exports: List[str]) -> str:
    """One element's line; ``exports`` are ``NAME=word`` with each word already quoted."""
    return "{}\t{}{}{}".format(task_id, _LINE_HEAD, index, "".join(" " + e for e in exports))


def line_index(line: str) -> Optional[int]:
    """The element index of a tasks-file line (None: not such a line)."""
    rest = line.split("\t", 1)[-1]
    if not rest.startswith(_LINE_HEAD):
        return None
    word = rest[len(_LINE_HEAD) :].split(" ", 1)[0]
    return int(word) if word.isdigit() else None


def _exit_code(status: int) -> int:
    if os.WIFEXITED(status):
        return os.WEXITSTATUS(status)
    return 128 + os.WTERMSIG(status) if os.WIFSIGNALED(status) else 1


def _add_peak(line: str, max_rss_kb: int) -> None:
    """Add the element's own peak RSS (its largest process, from wait4) to its result.json."""
    index = line_index(line)
    run_dir, step = os.environ.get("HPCFLOW_RUN_DIR"), os.environ.get("HPCFLOW_STEP")
    if index is None or not run_dir or not step:
        return
    path = os.path.join(task_dir(run_dir, step, index), ".hpcflow", "result.json")
    res = _read_json(path)
    if not isinstance(res, dict):
        return  # killed before it wrote one: the task's fate decides
    res["max_rss_kb"] = int(max_rss_kb)
    try:
        with open(path + ".tmp", "w", encoding="utf-8") as f:
            f.write(json.dumps(res) + "\n")
        os.replace(path + ".tmp", path)
    except OSError:
        pass


def cmd_pack(parallel: int, lines: List[str]) -> int:
    """A packed task's elements, up to ``parallel`` at once, each in its own
    `bash -c 'hpcflow_element LINE'` (the job script exports the function). Waiting with
    wait4 gives each element its own peak RSS. Exit: the first non-zero exit code."""
    running: dict = {}
    status = 0

    def reap() -> None:
        nonlocal status
        pid, st, ru = os.wait4(-1, 0)
        line = running.pop(pid, None)
        code = _exit_code(st)
        if line is not None:
            _add_peak(line, ru.ru_maxrss)  # Linux: kilobytes
        if code != 0 and status == 0:
            status = code

    for line in lines:
        while len(running) >= max(1, parallel):
            reap()
        pid = os.fork()
        if pid == 0:  # the child: the element, as the bash loop ran it
            try:
                argv = ["bash", "-c", 'set -uo pipefail; hpcflow_element "$1"', "bash", line]
                os.execvp("bash", argv)
            finally:
                os._exit(127)
        running[pid] = line
    while running:
        reap()
    return status


def task_lines(tasks_file: str, task_id: str) -> List[str]:
    """The lines of ``task_id`` in a tasks file ("<task id><TAB>..."), as the job script's
    awk selects them. Read here, not passed in argv: a pack of long lines would be over the
    kernel's argument limit (ARG_MAX) for the exec that starts this tool."""
    prefix = task_id + "\t"
    with open(tasks_file, encoding="utf-8", newline="\n") as f:
        return [ln.rstrip("\n") for ln in f if ln.startswith(prefix)]


def main(argv: list[str]) -> int:
    cmds = {"when": cmd_when, "manifest": cmd_manifest, "outputs": cmd_outputs}
    if len(argv) == 2 and argv[0] in cmds:
        return cmds[argv[0]](argv[1])
    if len(argv) == 5 and argv[0] == "pack" and argv[1].isdigit() and argv[2] == "--tasks":
        return cmd_pack(int(argv[1]), task_lines(argv[3], argv[4]))
    if len(argv) >= 2 and argv[0] == "pack" and argv[1].isdigit():  # runs rendered before
        return cmd_pack(int(argv[1]), argv[2:])
    if len(argv) == 3 and argv[0] == "ffrd-config":
        return cmd_ffrd_config(argv[1], argv[2])
    print("usage: hpcflow_job.py when|manifest|outputs SPEC | ffrd-config SRC DST | "
          "pack PARALLEL --tasks FILE TASK_ID", file=sys.stderr)  # fmt: skip
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
