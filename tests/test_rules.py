"""Every rule label the tree cites (``H1``, ``L7``...) is defined in docs/rules.md.

Labels are looked for where citations live: comments and docstrings of Python files,
the prose of Markdown files (fenced code and inline code left out) and the comments of
examples (scenario task names such as ``L1`` are not citations). A fresh clone has
nothing else to resolve them with.
"""

from __future__ import annotations

import ast
import io
import pathlib
import re
import tokenize
from collections.abc import Iterator

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
RULES = ROOT / "docs" / "rules.md"
# A rule label: a section letter and a number, with an optional letter (L1b). Letters
# up to R, so retired labels of the conformance lists (two digits, R-rules) cannot
# creep back.
LABEL = re.compile(r"(?<![\w./`-])([A-R][0-9]{1,2}[a-z]?)(?![\w-])")
HEADING = re.compile(r"^### ([A-R][0-9]{1,2}[a-z]?)\. (.+)$", re.MULTILINE)
KERNEL_SOURCE = re.compile(r"`(?:kernel|fs|include)/[\w/]+\.[ch](?::\w+)?`")
SCANNED = ("src", "tests", "benchmarks", "tools", "docs", "examples", "README.md")


def defined_rules() -> dict[str, str]:
    """Each label docs/rules.md defines, with the text of its rule."""
    text = RULES.read_text()
    heads = list(HEADING.finditer(text))
    rules: dict[str, str] = {}
    for here, after in zip(heads, [*heads[1:], None], strict=True):
        end = after.start() if after else len(text)
        body = text[here.end() : end].split("\n## ")[0]
        assert here.group(1) not in rules, f"{here.group(1)} is defined twice"
        rules[here.group(1)] = body
    return rules


def _python_texts(path: pathlib.Path) -> Iterator[tuple[int, str]]:
    source = path.read_text()
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            yield token.start[0], token.string
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            doc = ast.get_docstring(node, clean=False)
            if doc is not None:
                yield node.body[0].lineno, doc


def _markdown_texts(path: pathlib.Path) -> Iterator[tuple[int, str]]:
    fenced = False
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        if not fenced:
            yield number, re.sub(r"`[^`]*`", "", line)


def _scenario_comments(path: pathlib.Path) -> Iterator[tuple[int, str]]:
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if "#" in line:
            yield number, line[line.index("#") :]


READERS = {".py": _python_texts, ".md": _markdown_texts, ".pidns": _scenario_comments}


def citations(root: pathlib.Path) -> Iterator[tuple[str, str]]:
    """(where, label) for every label cited under ``root``."""
    for name in SCANNED:
        base = root / name
        paths = [base] if base.is_file() else sorted(base.rglob("*"))
        for path in paths:
            reader = READERS.get(path.suffix)
            if reader is None or not path.is_file():
                continue
            for number, text in reader(path):
                for match in LABEL.finditer(text):
                    yield f"{path.relative_to(root)}:{number}", match.group(1)


def test_every_cited_label_is_defined() -> None:
    rules = defined_rules()
    undefined = [f"{where}: {label}" for where, label in citations(ROOT) if label not in rules]
    assert not undefined, "labels docs/rules.md does not define:\n" + "\n".join(undefined)


def test_the_tree_cites_rules_at_all() -> None:
    # the scan itself works: the examples and the profiles cite rules
    cited = {label for _, label in citations(ROOT)}
    assert {"H1", "G4", "L7", "A4", "B6"} <= cited


def test_every_rule_names_the_kernel_source_it_comes_from() -> None:
    rules = defined_rules()
    assert len(rules) >= 40
    no_source = [label for label, body in rules.items() if not KERNEL_SOURCE.search(body)]
    assert not no_source, f"rules without a kernel source: {no_source}"


def test_nothing_points_outside_the_repository_for_a_rule() -> None:
    outside = re.compile(r"shared/reference|kernel-pidns-semantics|conformance-scenarios")
    hits = [
        f"{path.relative_to(ROOT)}"
        for name in SCANNED
        for path in ([ROOT / name] if (ROOT / name).is_file() else (ROOT / name).rglob("*"))
        if path.suffix in READERS and path.is_file() and outside.search(path.read_text())
        if path != pathlib.Path(__file__)
    ]
    assert not hits, hits


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("# docs/rules.md H1, L1b: an init", ["H1", "L1b"]),
        ("# LTP pidns05 and E2BIG, x86_64, 0x20000000", []),
        ("# retired: K14 [R5] L02", ["K14", "R5", "L02"]),
    ],
)
def test_the_label_pattern(text: str, expected: list[str]) -> None:
    assert LABEL.findall(text) == expected


def test_an_undefined_label_is_reported(tmp_path: pathlib.Path) -> None:
    (tmp_path / "examples").mkdir()
    (tmp_path / "examples" / "x.pidns").write_text("# rule Z9 and H1\nL1: getpid => 1\n")
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "m.py").write_text('"""Cites B6."""\nL9 = 1  # see Q3\nx = "A1"\n')
    assert sorted(label for _, label in citations(tmp_path)) == ["B6", "H1", "Q3"]
