"""The core's layers run one way (issue 41): inference < records < report < lab. A module imports only
from its own layer or the ones below, at the top of the file or inside a function alike."""

from __future__ import annotations

import ast
from pathlib import Path

CORE = Path(__file__).resolve().parents[1] / "desktop" / "core"
LAYERS = ("inference", "records", "report", "lab")


def _imports(path: Path) -> list[tuple[str, int]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.append((node.module, node.lineno))
        elif isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
    return found


def test_core_layers_run_one_way():
    upward = []
    for rank, layer in enumerate(LAYERS):
        for path in sorted((CORE / layer).glob("*.py")):
            for module, line in _imports(path):
                parts = module.split(".")
                if parts[:2] == ["desktop", "core"] and len(parts) > 2 and parts[2] in LAYERS \
                        and LAYERS.index(parts[2]) > rank:
                    upward.append(f"{path.relative_to(CORE)}:{line} imports {module}")
    assert upward == [], "\n".join(upward)


def test_no_core_module_reaches_into_another_modules_objects_privates():
    """Lifecycle works on the session's store and a public actor, not on Session's private methods (issue 41 item 3):
    no core module calls `<name>._something` on an object other than itself or a module."""
    import re

    offenders = []
    for path in CORE.rglob("*.py"):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            for match in re.finditer(r"\b(session|store|record|cell|model)\._[a-z]\w*\(", line):
                if path.stem == match.group(1):  # a class's own module may use its instances' privates
                    continue
                offenders.append(f"{path.relative_to(CORE)}:{number}: {match.group(0)}")
    assert offenders == []


def _module_name(path: Path) -> str:
    parts = path.relative_to(CORE.parents[1]).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _desktop_imports(path: Path, known: set[str]) -> set[str]:
    """The desktop modules a file imports anywhere in it (at the top, in a function, for type checking alike):
    `from desktop.ui import layout` names the module desktop.ui.layout."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("desktop"):
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names} & known
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("desktop")}
    return found & known


def test_no_import_circles_in_the_app():
    """Issue 41's target: no two desktop modules import each other, directly or round a loop (a package's
    __init__ that only hands names on aside). A circle names its files."""
    files = {_module_name(p): p for p in CORE.parent.rglob("*.py")}
    known = set(files)
    graph = {name: _desktop_imports(path, known) - {name} for name, path in files.items()
             if not name.endswith(("desktop", "__main__"))}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles = []

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for name in sorted(graph):
        if name not in index:
            visit(name)
    assert circles == [], circles
