"""The package's layers (docs/architecture.md) as its imports keep them: the model never
imports the real kernel's code and the real kernel's never imports the model, the
renderer, the scenario language or the CLI; core imports nothing of pidns but itself.
Function-level imports count too (they are how start-up costs are deferred)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "src" / "pidns"

# layer -> the pidns packages it must not import
FORBIDDEN = {
    "core": ("pidns.model", "pidns.linux", "pidns.scenario", "pidns.render", "pidns.cli"),
    "model": ("pidns.linux", "pidns.scenario", "pidns.render", "pidns.cli", "pidns.pam"),
    "linux": ("pidns.model", "pidns.scenario", "pidns.render", "pidns.cli", "pidns.pam"),
}


def imported(path: Path, root: Path = PACKAGE) -> set[str]:
    """Every module ``path`` (of the package at ``root``) imports, anywhere in it, by its
    full name."""
    package = ".".join(path.relative_to(root.parent).with_suffix("").parts[:-1])
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_a_layer_imports_nothing_above_it(layer: str) -> None:
    files = sorted((PACKAGE / layer).rglob("*.py"))
    assert files
    crossings = {
        f"{path.relative_to(PACKAGE)}: {name}"
        for path in files
        for name in imported(path)
        if name.startswith(FORBIDDEN[layer])
    }
    assert not crossings, sorted(crossings)


def test_the_check_sees_a_crossing(tmp_path: Path) -> None:
    module = PACKAGE / "linux" / "nsfs.py"
    names = imported(module)
    assert "os" in names and not any(n.startswith("pidns.render") for n in names)
    fake = tmp_path / "pidns" / "linux" / "bad.py"
    fake.parent.mkdir(parents=True)
    fake.write_text("def f():\n    from pidns.render import view\n    from ..model import kernel\n")
    assert {"pidns.render.view", "pidns.model.kernel"} <= imported(fake, tmp_path / "pidns")
