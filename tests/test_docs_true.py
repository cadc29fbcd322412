"""Counts and names the docs state, checked against the tree."""

from __future__ import annotations

import json
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent


def test_the_readme_counts_the_examples() -> None:
    text = (ROOT / "README.md").read_text()
    stated = int(re.search(r"`examples/` holds (\d+) scenarios", text).group(1))  # type: ignore[union-attr]
    assert stated == len(list((ROOT / "examples").glob("*.pidns")))


def test_the_building_blocks_named_in_run_md_exist() -> None:
    from pidns.linux import syscalls  # noqa: PLC0415

    text = (ROOT / "docs" / "run.md").read_text()
    row = next(line for line in text.splitlines() if line.startswith("| `syscalls` |"))
    names = re.findall(r"`([a-z_]+)`", row.split("|")[2].split("(`nsfs`")[0])
    assert names and all(hasattr(syscalls, name) for name in names), names


def _keys(value: object, where: str = "") -> set[str]:
    """Every key path of a JSON document (lists: their first element)."""
    if isinstance(value, dict):
        found = set()
        for key, item in value.items():
            found |= {f"{where}.{key}"} | _keys(item, f"{where}.{key}")
        return found
    if isinstance(value, list) and value:
        return _keys(value[0], f"{where}[]")
    return set()


def test_check_json_sample_in_check_md_has_the_fields_check_writes(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from pidns.cli import main  # noqa: PLC0415

    text = (ROOT / "docs" / "check.md").read_text()
    section = text.split("## JSON (`--json`)", 1)[1]
    sample = json.loads(section.split("```json\n", 1)[1].split("```", 1)[0])
    example = str(ROOT / "examples" / "01_seed_login_flow.pidns")
    assert main(["check", "--json", example]) == 0
    written = json.loads(capsys.readouterr().out)
    assert main(["check", "--json", "--random", "1", "--seed", "1", "--steps", "3"]) == 0
    random_run = json.loads(capsys.readouterr().out)
    documented = {k for k in _keys(sample) if ".real." not in k}  # "real": the same fields
    actual = _keys(written) | _keys(random_run["summary"], ".summary")
    if "real" in written["scenarios"][0]["backends"]:
        documented |= {k.replace(".model", ".real") for k in documented if ".model" in k}
    else:  # the model alone (no pid namespaces here): no "real" in the steps
        documented = {k for k in documented if ".real" not in k}
    assert documented == actual
