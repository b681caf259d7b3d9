"""scripts/ holds the product's provenance (graph surgery of the shipped models, derived cards, the README's figures)
and scripts/measure/ the measurements behind the cards' and README's numbers (issue 41, item 6). They are modules of
one package, run from the repository root with `python -m scripts...`: none edits sys.path, every one imports, and
every name a script imports, at its top or inside a function, exists (screenshots_trust.py imported AdaptDialog from
a module that no longer had it, unnoticed until run)."""

from __future__ import annotations

import ast
import subprocess
import sys

from conftest import ROOT

SCRIPTS = sorted(p for p in (ROOT / "scripts").rglob("*.py") if p.name != "__init__.py")


def module_name(path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts)


def test_no_script_edits_the_import_path():
    offenders = [p.name for p in SCRIPTS if "sys.path" in p.read_text(encoding="utf-8")]
    assert offenders == []


def test_every_script_imports_and_every_name_it_imports_exists():
    wanted = []
    for path in SCRIPTS:
        wanted.append((module_name(path), None))
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                wanted += [(node.module, alias.name) for alias in node.names if alias.name != "*"]
            elif isinstance(node, ast.Import):
                wanted += [(alias.name, None) for alias in node.names]
    code = ("import importlib, sys\nmissing = []\n"
            f"for module, name in {sorted(set(wanted), key=str)!r}:\n"
            "    try:\n"
            "        m = importlib.import_module(module)\n"
            "        if name is not None and not hasattr(m, name):\n"
            "            importlib.import_module(f'{module}.{name}')\n"
            "    except Exception as err:\n"
            "        missing.append(f'{module} {name}: {type(err).__name__}: {err}')\n"
            "print('\\n'.join(missing))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=600,
                         env={"PATH": "/usr/bin:/bin", "QT_QPA_PLATFORM": "offscreen", "HOME": "/tmp"})
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "", out.stdout
