"""The package's shape: imports run downward (no cycle), at module top, and nobody imports
a tool (tools/ are command lines over the library)."""
from __future__ import annotations

import ast
from pathlib import Path

from tests.helpers import REPO

PACKAGE = REPO / "python" / "tcdcn"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_imports() -> dict[str, set[str]]:
    """Each tcdcn module's module-level imports of other tcdcn modules."""
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    edges = {}
    for name, path in modules.items():
        deps = set()
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for alias in node.names:
                    full = f"{node.module}.{alias.name}"
                    deps.add(full if full in modules else node.module)
            elif isinstance(node, ast.Import):
                deps.update(a.name for a in node.names)
        edges[name] = {d for d in deps if d in modules and d != name}
    return edges


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node):
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None
    for node in sorted(edges):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_no_import_cycle_in_the_package():
    edges = package_imports()
    assert len(edges) > 30 and edges["tcdcn.api"]   # the graph was read
    cycle = find_cycle(edges)
    assert cycle is None, " -> ".join(cycle)


def test_package_modules_import_the_package_at_their_top():
    """No tcdcn import hides inside a function (they hid an import cycle once)."""
    hidden = []
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text())
        top = {id(n) for n in tree.body}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and id(node) not in top \
                    and (node.module or "").startswith("tcdcn"):
                hidden.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert not hidden, hidden


def test_nobody_imports_a_tool():
    """Tests and tools import the library; a tool is run, never imported (no
    spec_from_file_location, no tools/ on sys.path, no `import <tool>`)."""
    tools = {p.stem for p in (REPO / "tools").glob("*.py")}
    offenders = []
    for path in list((REPO / "tests").rglob("*.py")) + list((REPO / "tools").glob("*.py")):
        if path == Path(__file__):
            continue
        text = path.read_text()
        if "spec_from_file_location" in text or '"tools"))' in text:
            offenders.append(f"{path.relative_to(REPO)}: loads a file as a module")
        for node in ast.walk(ast.parse(text)):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module] if isinstance(node, ast.ImportFrom) and node.module else [])
            offenders += [f"{path.relative_to(REPO)}:{node.lineno}: import {n}"
                          for n in names if n.split(".")[0] in tools]
    assert not offenders, offenders
