"""The shape of the code stays as docs/architecture.md draws it.

- import-linter's contracts (pyproject.toml): drivers/ imports no capability, core/ imports no
  capability or driver, worker.py imports no capability;
- no package reaches into another package's private names (`from pilothouse.x import _y`, or
  `module._y` on a module imported from another package).
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src" / "pilothouse"


def test_import_contracts_hold() -> None:
    binary = shutil.which("lint-imports") or str(Path(sys.executable).parent / "lint-imports")
    result = subprocess.run(
        [binary, "--no-cache"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]


def _package(module: str) -> str:
    """pilothouse.<package> of a dotted name (top-level modules are their own package)."""
    parts = module.split(".")
    return ".".join(parts[:2])


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def private_reaches(source: str, module: str) -> list[str]:
    """Private names of other packages the module `module` (its source) uses."""
    relative = module
    own = _package(module)
    tree = ast.parse(source)
    found = []
    foreign_modules: dict[str, str] = {}  # local alias -> module, for modules of other packages
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if not node.module.startswith("pilothouse") or _package(node.module) == own:
                continue
            for alias in node.names:
                if _private(alias.name):
                    found.append(f"{relative}: from {node.module} import {alias.name}")
                foreign_modules[alias.asname or alias.name] = f"{node.module}.{alias.name}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("pilothouse") and _package(alias.name) != own:
                    foreign_modules[alias.asname or alias.name] = alias.name
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and _private(node.attr)
            and isinstance(node.value, ast.Name)
            and node.value.id in foreign_modules
        ):
            found.append(f"{relative}: {node.value.id}.{node.attr}")
    return found


def test_no_package_reaches_into_another_packages_private_names() -> None:
    found = []
    for path in sorted(SRC.rglob("*.py")):
        module = ".".join(path.relative_to(SRC.parent).with_suffix("").parts)
        found += private_reaches(path.read_text(), module)
    assert found == []


def test_the_private_name_check_sees_a_reach() -> None:
    source = (
        "import pilothouse.variables.service as variables\n"
        "from pilothouse.backups import jobs\n"
        "from pilothouse.deployments import _own\n"
        "from pilothouse.healthchecks.monitor import _hidden\n"
        "jobs._load, variables._seal, jobs.__name__\n"
    )
    assert private_reaches(source, "pilothouse.deployments.engine") == [
        "pilothouse.deployments.engine: from pilothouse.healthchecks.monitor import _hidden",
        "pilothouse.deployments.engine: jobs._load",
        "pilothouse.deployments.engine: variables._seal",
    ]
