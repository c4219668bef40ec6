"""The import rules between the layers hold, read from the import graph itself.

Each entry point is imported in a fresh interpreter and the modules it loaded are read
from `sys.modules`: what a process really loads, through every indirect import, which a
reading of one file's import lines would miss. One subprocess per entry point keeps
the file fast. Imports made only inside a function do not show in `sys.modules` until
called, so the rule that matters most for shipping (nothing shipped imports the
tooling) is also read from every import statement under daemon/, wherever it sits.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import NamedTuple

from daemon.config import ROOT

PACKAGE = ROOT / "daemon"
TOOLING = ("bench", "devtools")

# Imports each name given (a trailing ".*" imports every module of that package, except
# __main__ modules, which would run their program), then prints what was imported and
# every module loaded.
PROGRAM = """
import importlib, json, pkgutil, sys
imported = []
for name in sys.argv[1:]:
    if name.endswith(".*"):
        package = importlib.import_module(name[:-2])
        names = [package.__name__] + [
            info.name for info in pkgutil.walk_packages(package.__path__, package.__name__ + ".")
            if not info.name.endswith(".__main__")]
    else:
        names = [name]
    for each in names:
        importlib.import_module(each)
        imported.append(each)
print(json.dumps({"imported": imported, "modules": sorted(sys.modules),
                  "daemon": sys.modules["daemon"].__file__}))
"""


class Loaded(NamedTuple):
    imported: frozenset[str]  # the modules imported on purpose
    modules: frozenset[str]  # every module loaded as a result


@cache
def load(*names: str) -> Loaded:
    """Import `names` in a fresh interpreter; what it loaded."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)}
    result = subprocess.run([sys.executable, "-c", PROGRAM, *names], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout)
    # The tree under test, not another checkout installed in the venv.
    assert Path(out["daemon"]).resolve().parent == PACKAGE.resolve(), out["daemon"]
    return Loaded(frozenset(out["imported"]), frozenset(out["modules"]))


def packages(modules: frozenset[str], *tops: str) -> set[str]:
    """Which of the top-level packages `tops` any of `modules` belongs to."""
    return {m.split(".")[0] for m in modules} & set(tops)


def test_the_pool_never_loads_aiohttp_or_prometheus_client() -> None:
    modules = load("daemon.pool.master", "daemon.pool.child").modules
    assert "textract" in modules  # the probe sees what the pool does load
    assert packages(modules, "aiohttp", "prometheus_client") == set()


def test_the_api_never_imports_textract() -> None:
    modules = load("daemon.api.app").modules
    assert "aiohttp" in modules
    assert packages(modules, "textract") == set()


def test_the_document_code_imports_neither_redis_nor_aiohttp() -> None:
    imported, modules = load("daemon.documents.*")
    assert {"daemon.documents.extract", "daemon.documents.formats",
            "daemon.documents.guards", "daemon.documents.legacy_doc"} <= imported
    assert packages(modules, "redis", "aiohttp") == set()


def test_no_shipped_module_loads_the_benchmark_or_the_devtools() -> None:
    imported, modules = load("daemon.*")
    shipped = {str(p.relative_to(ROOT).with_suffix("")).replace(os.sep, ".")
               for p in PACKAGE.rglob("*.py")}
    shipped = {m.removesuffix(".__init__") for m in shipped}
    # Every module under daemon/ was imported, but the __main__ modules, which would run.
    assert shipped - imported == {m for m in shipped if m.endswith(".__main__")}
    assert packages(modules, *TOOLING) == set()


def _imports(tree: ast.AST) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
    return found


def test_no_import_statement_under_daemon_names_the_tooling() -> None:
    """Function-level imports and the __main__ modules included, which importing every
    module above cannot see."""
    paths = sorted(PACKAGE.rglob("*.py"))
    statements = {p: _imports(ast.parse(p.read_text(), str(p))) for p in paths}
    # The reader sees an import made inside a function, and the whole dotted name.
    assert _imports(ast.parse("def f():\n    import bench.arms\n")) == [(2, "bench.arms")]
    bad = [f"{path.relative_to(ROOT)}:{line} imports {name}"
           for path, found in statements.items() for line, name in found
           if name.split(".")[0] in TOOLING]
    assert bad == []
