"""The dependency arrows of ARCHITECTURE.md: api -> domains -> storage -> fhir/auth/audit -> core, and
`worker.py` the only module importing the domains' `tasks.py` (read from the source, not imported)."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "pms"
# What each layer may import from pms (besides itself and pms.config).
ALLOWED = {
    "core": set(),
    "fhir": {"core"},
    "auth": {"core", "fhir"},
    "audit": {"core", "fhir"},
    "storage": {"core", "fhir", "auth", "audit"},
    "domains": {"core", "fhir", "auth", "audit", "storage"},
}


def imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name.startswith("pms.")}


def test_layers_import_only_downwards() -> None:
    wrong = []
    for layer, allowed in ALLOWED.items():
        for path in (SRC / layer).rglob("*.py"):
            for name in imports(path):
                target = name.split(".")[1]
                if target not in {layer, "config", *allowed}:
                    wrong.append(f"{path.relative_to(SRC)} imports {name}")
    assert wrong == []


def test_only_the_worker_imports_the_domains_tasks() -> None:
    importers = {
        str(path.relative_to(SRC))
        for path in SRC.rglob("*.py")
        if any(name.startswith("pms.domains.") and name.endswith(".tasks") for name in imports(path))
        and path.parent.name != "tests"
    }
    # A domain's own package may use its tasks module; no other layer may.
    outside = {p for p in importers if not p.startswith("domains/")}
    assert outside == {"worker.py"}
