"""The sdist is complete: built by setuptools' own PEP 517 hook, it carries LICENSE (the
``license`` pyproject names), docs/, examples/, tests/, and its own tests pass from the
unpacked tree (a subset here: the model, the parser, the status channel)."""

from __future__ import annotations

import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SUBSET = ["tests/test_model_seed.py", "tests/test_parser.py", "tests/test_status_channel.py"]

pytestmark = pytest.mark.slow


def test_the_sdist_is_complete_and_its_tests_pass_unpacked(tmp_path: Path) -> None:
    out = tmp_path / "dist"
    build = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from setuptools import build_meta; "
            "print(build_meta.build_sdist(sys.argv[1]))",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert build.returncode == 0, build.stderr
    name = build.stdout.split()[-1]
    with tarfile.open(out / name) as archive:
        archive.extractall(tmp_path / "unpacked", filter="data")
    (tree,) = (tmp_path / "unpacked").iterdir()
    assert (tree / "LICENSE").read_text().startswith("MIT License")
    for part in ("docs/run.md", "examples/01_seed_login_flow.pidns", "tests/conftest.py",
                 "bin/pidns", "Makefile", "src/pidns/py.typed"):  # fmt: skip
        assert (tree / part).exists(), part
    metadata = (tree / "PKG-INFO").read_text()
    assert "License: MIT" in metadata
    assert "Classifier: License :: OSI Approved :: MIT License" in metadata
    urls = dict(
        line.removeprefix("Project-URL: ").split(", ", 1)
        for line in metadata.splitlines()
        if line.startswith("Project-URL: ")
    )
    assert set(urls) >= {"Homepage", "Documentation", "Source", "Issues"}, urls
    for label in ("Documentation", "Source"):  # a path of the repository: one the sdist has
        path = urls[label].split("/main/", 1)[1]
        assert (tree / path).exists(), (label, urls[label])
    tests = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *SUBSET],
        cwd=tree,
        env={"PYTHONPATH": str(tree / "src"), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert tests.returncode == 0, tests.stdout[-3000:] + tests.stderr[-3000:]
    where = subprocess.run(
        [sys.executable, "-c", "import pidns; print(pidns.__file__)"],
        cwd=tree,
        env={"PYTHONPATH": str(tree / "src")},
        capture_output=True,
        text=True,
        check=True,
    )
    assert where.stdout.startswith(str(tree))  # the unpacked tree's, not this checkout's
