"""Counts and names the docs state, checked against the tree."""

from __future__ import annotations

import pathlib
import re

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
