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
