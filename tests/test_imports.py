"""The import graph of symgrad's modules has no cycle (imports inside functions and package re-exports count)."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PKG = ROOT / "symgrad"


def module_names():
    """{dotted module name: file} for every module under symgrad/ (packages as their __init__.py)."""
    out = {}
    for path in sorted(PKG.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _package_of(name, path):
    """The package a module's relative imports start from."""
    return name if path.name == "__init__.py" else name.rpartition(".")[0]


def imported(name, path, modules):
    """The symgrad modules that module ``name`` imports anywhere in its file."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                pkg = _package_of(name, path).split(".")
                pkg = pkg[:len(pkg) - node.level + 1]
                base = ".".join(pkg + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names)
    return {m for m in found if m in modules and m != name}


def graph():
    """{module: set of the symgrad modules it imports}."""
    modules = module_names()
    return {name: imported(name, path, modules) for name, path in modules.items()}


def find_cycles(g):
    """Every elementary cycle found by a depth-first search, one per back edge, as lists of modules."""
    cycles, state = [], {}

    def visit(v, stack):
        state[v] = "open"
        stack.append(v)
        for w in sorted(g.get(v, ())):
            if state.get(w) == "open":
                cycles.append(stack[stack.index(w):] + [w])
            elif w not in state:
                visit(w, stack)
        stack.pop()
        state[v] = "done"

    for v in sorted(g):
        if v not in state:
            visit(v, [])
    return cycles


def test_cycle_finder_reports_a_cycle():
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


def test_from_import_of_a_submodule_is_an_edge(tmp_path):
    mod = tmp_path / "m.py"
    mod.write_text("def f():\n    from symgrad.report import layout\n    from . import cli\n")
    modules = {"symgrad.report.layout": None, "symgrad.report": None, "symgrad.x.cli": None, "symgrad.x.m": None}
    assert imported("symgrad.x.m", mod, modules) == {"symgrad.report", "symgrad.report.layout", "symgrad.x.cli"}


def test_submodules_do_not_import_the_package_root():
    g = graph()
    assert [m for m, deps in g.items() if "symgrad" in deps and m != "symgrad.__main__"] == []


def test_no_import_cycles():
    cycles = find_cycles(graph())
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)
