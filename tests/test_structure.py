"""The shape of the code (issue 15): an import graph without cycles, small modules and functions, and no
path pattern of the workflow inside the library (the rules pass every path)."""
from __future__ import annotations

import ast
import re
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "cnnpipe"


def _module(path: Path) -> str:
    parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """cnnpipe module -> the cnnpipe modules it imports (at the top or inside a function)."""
    modules = {_module(p): p for p in PKG.rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(up + ([base] if base else []))
                targets = [f"{base}.{a.name}" for a in node.names] + [base]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            # the most specific cnnpipe module each import names (a module, or the package holding a name)
            hit = {t for t in targets if t in modules}
            graph[name] |= {t for t in hit if not any(o != t and o.startswith(t + ".") for o in hit)} - {name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    found, state = [], {}

    def visit(m: str, stack: list[str]) -> None:
        state[m] = 1
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                found.append(stack[stack.index(n):] + [n])
            elif n not in state:
                visit(n, stack + [n])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    return found


def test_import_graph_has_no_cycles():
    graph = import_graph()
    assert "cnnpipe.rank" in graph["cnnpipe.verbs"] and "cnnpipe.components" in graph["cnnpipe.config"]
    assert cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == [["a", "b", "c", "a"]]


def test_modules_and_functions_are_small():
    big = {str(p.relative_to(PKG)): n for p in PKG.rglob("*.py") if (n := len(p.read_text().splitlines())) > 300}
    assert big == {}
    long = [f"{p.relative_to(PKG)}:{f.name} ({f.end_lineno - f.lineno + 1} lines)"
            for p in PKG.rglob("*.py") for f in ast.walk(ast.parse(p.read_text()))
            if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef)) and f.end_lineno - f.lineno + 1 > 60]
    assert long == []


def test_no_workflow_path_in_the_library():
    """Defaults for where files go live in the rules and the config; the code only takes paths. (The
    schema's default ``inputs`` is config: the demo's location.)"""
    hits = [f"{p.relative_to(PKG)}:{i}" for p in PKG.rglob("*") if p.suffix in (".py", ".j2", ".js")
            for i, line in enumerate(p.read_text().splitlines(), 1) if re.search(r"\bresults/", line)]
    assert hits == []
