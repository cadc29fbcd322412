"""Read .pidns files into a Scenario (docs/scenario-language.md).

The parser checks everything that can be known without running a step: the shape of
each line, op names and arguments, flag/signal/errno names, process names (``root`` is
reserved, a name is bound once and used only after its fork or clone, no step by a
process after its own ``exit``), and it rewrites every ``=> EXPECTED`` into the canonical
value string of ``pidns.scenario.ast`` so that results compare by string equality.
Every problem is a ScenarioError carrying FILE:LINE:COLUMN and the offending line.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from pidns.core import errnos, signals
from pidns.core import flags as cf
from pidns.model import profiles
from pidns.scenario import ast
from pidns.scenario.ast import Args, Op, Scenario, State, Step
from pidns.scenario.backend import ScenarioError
from pidns.scenario.ops import KEYWORDS, SPECS, Kind, OpSpec, P, Param

ROOT = "root"
# Words that are never names: root names the world's init, the others are keywords of the
# ops' grammars (``wait [pgrp] [TARGET|any] [nohang] ...``, ``pidfd TARGET [thread]``).
RESERVED_NAMES = frozenset({ROOT}) | KEYWORDS
KEEP_PIDFD = "pidfd="
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*\Z")
_INT = re.compile(r"-?[0-9]+\Z")
_UINT = re.compile(r"[0-9]+\Z")
_RTMIN = int(signals.number("RTMIN"))
_RTMAX = int(signals.number("RTMAX"))
# The real backend interrupts a puppet's blocking wait with SIGRTMAX (docs: Signals).
RESERVED_SIGNALS = frozenset({_RTMAX})
_WAIT_RESULT = re.compile(r"([A-Za-z][A-Za-z0-9_]*)\s+(exited|killed)\s+(\S+)\Z", re.IGNORECASE)
_CAUGHT_ITEM = re.compile(r"(\S+)\s+from\s+([0-9]+)\Z", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class _Token:
    text: str
    column: int  # 1-based


@dataclass(frozen=True, slots=True)
class _Parts:
    """A step line cut into its pieces, before any of them is checked."""

    actor: _Token
    op: _Token
    args: list[_Token]
    bind: _Token | None
    bind_arrow_column: int
    expected: _Token | None
    text: str


class _Line:
    """One source line and the helpers that turn its problems into ScenarioErrors."""

    def __init__(self, path: str, number: int, raw: str) -> None:
        self.path = path
        self.number = number
        self.raw = raw
        self.shown = raw.replace("\t", " ")  # one column per character, so the caret lines up

    def error(self, column: int, message: str) -> ScenarioError:
        return ScenarioError(self.path, self.number, max(column, 1), message, self.shown)


def _tokens(text: str, offset: int) -> list[_Token]:
    """Whitespace-separated words of ``text`` with their columns (``offset``: text's start)."""
    return [_Token(m.group(), offset + m.start() + 1) for m in re.finditer(r"\S+", text)]


# ---- values ---------------------------------------------------------------------------


def signal_number(text: str) -> int:
    """``KILL``, ``SIGKILL``, ``kill``, ``9``, ``RTMIN+3`` -> the number. Raises ValueError."""
    key = text.strip().upper().removeprefix("SIG")
    match = re.fullmatch(r"RTMIN\+([0-9]+)", key)
    if match:
        num = _RTMIN + int(match.group(1))
        if num > _RTMAX:
            raise ValueError(f"real-time signal out of range: {text}")
    else:
        try:
            num = signals.number(key)
        except ValueError:
            if key.isdigit():
                raise
            raise ValueError(f"unknown signal {text!r}") from None
    if num in RESERVED_SIGNALS:
        raise ValueError(f"signal {text} is reserved by the real backend")
    return num


def canonical_signal(text: str) -> str:
    """``SIGKILL`` -> ``KILL``; ``9`` -> ``KILL``. Raises ValueError."""
    return signals.name(signal_number(text))


def parse_value(text: str, names: frozenset[str] | None = None) -> tuple[str, Kind | None]:
    """Canonicalise one value as the language writes it; returns ``(canonical, kind)``,
    kind None for ``blocks`` and ``skipped`` (which fit every op).

    ``names`` (when given) is the set of process names a wait result may name.
    Raises ValueError with a message fit for a ScenarioError.
    """
    text = text.strip()
    lower = text.lower()
    if not text:
        raise ValueError("empty expected value")
    if lower in (ast.BLOCKS, ast.SKIPPED):
        return lower, None
    if lower == ast.NONE:
        return ast.NONE, Kind.WAIT
    if lower in {s.value for s in State}:
        return lower, Kind.STATE
    if _UINT.match(text):
        return ast.pid_value(int(text)), Kind.NUMBER
    if _INT.match(text):
        raise ValueError(f"a negative number is never a result: {text}")
    if text.startswith("["):
        return _parse_list(text), Kind.LIST
    match = _WAIT_RESULT.match(text)
    if match:
        name, how, detail = match.groups()
        if names is not None and name not in names:
            raise ValueError(f"wait result names {name!r}, which is no process of this scenario")
        if how.lower() == "exited":
            if not _UINT.match(detail) or int(detail) > 255:
                raise ValueError(f"exit status must be 0..255: {detail}")
            return ast.exited(name, int(detail)), Kind.WAIT
        return ast.killed(name, canonical_signal(detail)), Kind.WAIT
    if text.upper().startswith("E") and errnos.is_name(text.upper()):
        return errnos.name(errnos.number(text.upper())), Kind.ERRNO
    if re.fullmatch(r"E[A-Za-z0-9]+", text):
        raise ValueError(f"unknown errno name {text!r}")
    raise ValueError(f"cannot read expected value {text!r}")


def _parse_list(text: str) -> str:
    if not text.endswith("]"):
        raise ValueError(f"a list must end with ']': {text}")
    inner = text[1:-1].strip()
    if not inner:
        return ast.list_value([])
    items = [item.strip() for item in inner.split(",")]
    if all(_UINT.match(item) for item in items) or items == ["-1"]:
        return ast.list_value(int(item) for item in items)  # [-1]: fdinfo of a gone task
    if not any(" " in item for item in items):
        try:
            return ast.signals_value(canonical_signal(item) for item in items)
        except ValueError:
            pass
    caught: list[tuple[str, int]] = []
    for item in items:
        match = _CAUGHT_ITEM.match(item)
        if not match:
            raise ValueError(f"a list holds numbers, signals or 'SIG from PID' items, not {item!r}")
        caught.append((canonical_signal(match.group(1)), int(match.group(2))))
    return ast.caught_value(caught)


# ---- lines ----------------------------------------------------------------------------


class _Parser:
    def __init__(self, path: str) -> None:
        self.path = path
        self.steps: list[Step] = []
        self.names: list[str] = ["A"]
        self.bound_at: dict[str, int] = {"A": 0}  # name -> line of its fork/clone (0: A)
        self.exited_at: dict[str, int] = {}
        self.profile: str | None = None
        self.all_binds: dict[str, int] = {}  # every -> NAME in the file, for better messages
        self.threads: set[str] = set()
        self.pidfds: dict[str, int] = {}  # pidfd name -> the line that made it

    def run(self, text: str) -> Scenario:
        lines = text.splitlines()
        for number, raw in enumerate(lines, 1):
            code = raw.split("#", 1)[0]
            for token in re.finditer(r"(?:->\s*|pidfd=)([A-Za-z][A-Za-z0-9_]*)", code):
                self.all_binds.setdefault(token.group(1), number)
        for number, raw in enumerate(lines, 1):
            self.line(_Line(self.path, number, raw))
        return Scenario(
            self.path,
            tuple(self.steps),
            self.profile or profiles.DEFAULT.name,
            tuple(self.names),
            frozenset(self.threads),
            frozenset(self.pidfds),
        )

    def line(self, line: _Line) -> None:
        code = line.raw.split("#", 1)[0]
        if not code.strip():
            return
        start = len(code) - len(code.lstrip())
        if code[start] == "%":
            self.directive(line, _tokens(code, 0))
            return
        colon = code.find(":")
        if colon < 0:
            raise line.error(start + 1, "expected 'ACTOR: OP ARG... [-> NAME] [=> EXPECTED]'")
        actor = _Token(code[:colon].strip(), start + 1)
        rest_at = colon + 1
        rest = code[rest_at:]
        expected: _Token | None = None
        arrow = rest.find("=>")
        if arrow >= 0:
            exp_text = rest[arrow + 2 :]
            if "=>" in exp_text:
                col = rest_at + arrow + 2 + exp_text.find("=>") + 1
                raise line.error(col, "more than one '=>'")
            lead = len(exp_text) - len(exp_text.lstrip())
            expected = _Token(exp_text.strip(), rest_at + arrow + 2 + lead + 1)
            if not expected.text:
                raise line.error(rest_at + arrow + 1, "'=>' must be followed by the expected value")
            rest = rest[:arrow]
        bind: _Token | None = None
        bind_arrow_column = 0
        bind_arrow = rest.find("->")
        if bind_arrow >= 0:
            bind_tokens = _tokens(rest[bind_arrow + 2 :], rest_at + bind_arrow + 2)
            if not bind_tokens:
                raise line.error(rest_at + bind_arrow + 1, "'->' must be followed by a name")
            if len(bind_tokens) > 1:
                raise line.error(bind_tokens[1].column, "'-> NAME' takes one name")
            bind = bind_tokens[0]
            bind_arrow_column = rest_at + bind_arrow + 1
            if "->" in bind.text:
                raise line.error(bind.column + bind.text.find("->"), "more than one '->'")
            rest = rest[:bind_arrow]
        words = _tokens(rest, rest_at)
        if not words:
            raise line.error(len(code.rstrip()) + 1, "missing op after 'ACTOR:'")
        self.step(
            line,
            _Parts(actor, words[0], words[1:], bind, bind_arrow_column, expected, code.strip()),
        )

    def directive(self, line: _Line, words: list[_Token]) -> None:
        if words[0].text != "%profile":
            raise line.error(words[0].column, f"unknown directive {words[0].text!r} (%profile)")
        if len(words) != 2:
            col = words[2].column if len(words) > 2 else words[0].column + len(words[0].text)
            raise line.error(col, "usage: %profile RELEASE (6.18, 6.1, 3.8: 3.8 or later)")
        if self.profile is not None:
            raise line.error(words[0].column, "%profile given twice")
        if self.steps:
            raise line.error(words[0].column, "%profile must come before the first step")
        try:
            self.profile = profiles.get(words[1].text).name
        except ValueError as err:
            raise line.error(words[1].column, str(err)) from None

    # ---- names ----

    def check_name_syntax(self, line: _Line, token: _Token, what: str) -> None:
        if not _NAME.match(token.text):
            raise line.error(
                token.column, f"bad {what} {token.text!r}: names are [A-Za-z][A-Za-z0-9_]*"
            )

    def existing(self, line: _Line, token: _Token, what: str, allow_root: bool) -> str:
        """A name that must already exist at this line."""
        self.check_name_syntax(line, token, what)
        name = token.text
        if name == ROOT:
            if allow_root:
                return name
            raise line.error(token.column, "'root' is the world's init: it runs no ops")
        if name in self.pidfds:
            raise line.error(token.column, f"{name} is a pidfd, not a process or thread")
        if name in self.bound_at:
            return name
        self.not_yet(line, token)
        raise line.error(token.column, f"unknown process {name!r} (no fork or clone makes it)")

    def not_yet(self, line: _Line, token: _Token) -> None:
        later = self.all_binds.get(token.text)
        if later is not None and later >= line.number:
            raise line.error(
                token.column, f"{token.text} is used before it exists (made at line {later})"
            )

    def existing_pidfd(self, line: _Line, token: _Token) -> str:
        """A pidfd name made by an earlier ``pidfd`` (or ``clone ... pidfd=NAME``)."""
        self.check_name_syntax(line, token, "pidfd")
        name = token.text
        if name in self.pidfds:
            return name
        if name in self.bound_at or name == ROOT:
            raise line.error(token.column, f"{name} is a process, not a pidfd")
        self.not_yet(line, token)
        raise line.error(token.column, f"unknown pidfd {name!r} (no pidfd op makes it)")

    def bind_name(self, line: _Line, token: _Token) -> str:
        self.check_name_syntax(line, token, "name")
        name = token.text
        if name == ROOT:
            raise line.error(token.column, "'root' is reserved: it names the world's init")
        if name in RESERVED_NAMES:
            raise line.error(token.column, f"{name!r} is a keyword of wait or pidfd, not a name")
        first = self.bound_at.get(name, self.pidfds.get(name))
        if first is not None:
            where = "A exists from the start" if first == 0 else f"already made at line {first}"
            raise line.error(token.column, f"{name} is bound twice ({where})")
        return name

    # ---- steps ----

    def step(self, line: _Line, parts: _Parts) -> None:
        actor_token, op_token, bind_token = parts.actor, parts.op, parts.bind
        if not actor_token.text:
            raise line.error(actor_token.column, "missing actor before ':'")
        actor = self.existing(line, actor_token, "actor", allow_root=False)
        if actor in self.exited_at:
            raise line.error(
                actor_token.column,
                f"{actor} called exit at line {self.exited_at[actor]}: it makes no more steps",
            )
        try:
            op = Op(op_token.text)
        except ValueError:
            known = ", ".join(o.value for o in Op)
            raise line.error(
                op_token.column, f"unknown op {op_token.text!r} (ops: {known})"
            ) from None
        spec = SPECS[op]
        parsed = self.arguments(line, spec, op_token, parts.args)
        bind: str | None = None
        if spec.binds:
            if bind_token is None:
                raise line.error(
                    op_token.column, f"{op.value} needs '-> NAME' for the new {spec.makes}"
                )
            bind = self.bind_name(line, bind_token)
            if bind == parsed.keep_pidfd:
                raise line.error(bind_token.column, f"{bind} is bound twice (pidfd={bind})")
        elif bind_token is not None:
            binders = ", ".join(s.name for s in SPECS.values() if s.binds)
            raise line.error(
                parts.bind_arrow_column, f"'-> NAME' only follows {binders}, not {op.value}"
            )
        expected: str | None = None
        if parts.expected is not None:
            expected = self.expectation(line, op, parts.expected, bind)
        self.steps.append(
            Step(len(self.steps), line.number, actor, op, parsed, parts.text, bind, expected)
        )
        if parsed.keep_pidfd is not None:
            self.pidfds[parsed.keep_pidfd] = line.number
        if bind is not None and spec.makes == "pidfd":
            self.pidfds[bind] = line.number
        elif bind is not None:
            self.bound_at[bind] = line.number
            self.names.append(bind)
            if spec.makes == "thread":
                self.threads.add(bind)
        if op in (Op.EXIT, Op.EXIT_THREAD):
            self.exited_at[actor] = line.number

    def expectation(self, line: _Line, op: Op, token: _Token, bind: str | None) -> str:
        names = frozenset(self.bound_at) | ({bind} if bind else frozenset())
        try:
            value, kind = parse_value(token.text, names)
        except ValueError as exc:
            raise line.error(token.column, str(exc)) from None
        results = SPECS[op].results
        if kind is not None and kind not in results:
            wanted = " or ".join(results)
            raise line.error(
                token.column, f"{op.value} yields {wanted}, not {kind} ({token.text!r})"
            )
        return value

    def arguments(self, line: _Line, spec: OpSpec, op_token: _Token, args: list[_Token]) -> Args:
        """Read ``args`` with the op's grammar (``spec.params``, pidns.scenario.ops): each
        word goes to the next parameter that can take it; an optional one that cannot
        (a KEYWORD whose word it is not, or a word a later KEYWORD owns) is left out."""
        end = op_token.column + len(op_token.text)
        usage = f"{spec.name} {spec.usage or 'takes no arguments'}"
        values: dict[str, object] = {}
        params = list(spec.params)
        index = 0
        for token in args:
            while index < len(params) and not self.takes(params, index, token):
                if not params[index].optional:
                    break
                index += 1
            if index >= len(params):
                raise line.error(token.column, f"unexpected argument: {usage}")
            field, value = self.argument(line, params[index], token)
            values[field] = value
            index += 1
        for param in params[index:]:
            if not param.optional:
                col = args[-1].column + len(args[-1].text) if args else end
                raise line.error(col, f"missing argument: {usage}")
        return Args(**values)  # type: ignore[arg-type]

    @staticmethod
    def takes(params: list[Param], index: int, token: _Token) -> bool:
        param = params[index]
        if param.kind is P.KEYWORD:
            return any(token.text == word for word, _ in param.words)
        if param.kind is P.SET_TID:  # clone FLAGS [set_tid=...] [exit_signal=SIG] [pidfd=P]
            return not token.text.startswith(("exit_signal=", KEEP_PIDFD))
        if param.kind is P.EXIT_SIGNAL:
            return token.text.startswith("exit_signal=")
        if param.kind is P.KEEP_PIDFD:
            return token.text.startswith(KEEP_PIDFD)
        later = {w for p in params[index + 1 :] if p.kind is P.KEYWORD for w, _ in p.words}
        return token.text not in later

    def argument(self, line: _Line, param: Param, token: _Token) -> tuple[str, object]:
        """The ``Args`` field one argument sets and its value, or the ScenarioError that
        says what it should be."""
        kind = param.kind
        if kind is P.TARGET_OR_NUMBER and _INT.match(token.text):  # kill 1 TERM: as it is
            return "number", self.integer(line, token, param.low, param.high, param.what)
        return param.field, self.value(line, param, token)

    def value(self, line: _Line, param: Param, token: _Token) -> object:
        kind = param.kind
        if kind in (P.TARGET, P.TARGET_OR_NUMBER):
            if param.any_word is not None and token.text == param.any_word:
                return None
            return self.existing(line, token, "target", allow_root=True)
        if kind is P.PIDFD:
            return self.existing_pidfd(line, token)
        if kind is P.KEEP_PIDFD:
            if not token.text.startswith(KEEP_PIDFD):
                raise line.error(token.column, f"expected {KEEP_PIDFD}NAME, not {token.text!r}")
            named = _Token(token.text[len(KEEP_PIDFD) :], token.column + len(KEEP_PIDFD))
            return self.bind_name(line, named)
        if kind is P.NUMBER:
            return self.integer(line, token, param.low, param.high, param.what)
        if kind is P.FLAGS:
            return self.flag_word(line, token)
        if kind is P.SET_TID:
            return self.set_tid(line, token)
        if kind is P.EXIT_SIGNAL:
            prefix = "exit_signal="
            if not token.text.startswith(prefix):
                raise line.error(token.column, f"expected {prefix}SIG, not {token.text!r}")
            named = _Token(token.text[len(prefix) :], token.column + len(prefix))
            return self.signal(line, named, allow_zero=True)
        if kind is P.SIGNAL:
            return self.signal(line, token, allow_zero=param.zero)
        for word, value in param.words:  # CHOICE, KEYWORD
            if token.text == word:
                return value
        words = [word for word, _ in param.words]
        wanted = ", ".join(words[:-1]) + " or " + words[-1]
        raise line.error(token.column, f"expected {wanted}, not {token.text!r}")

    def flag_word(self, line: _Line, token: _Token) -> int:
        if token.text == "0":
            return 0
        value = 0
        column = token.column
        for part in token.text.split("|"):
            try:
                if not part or part.strip() == "0":
                    raise ValueError(f"empty or zero flag in {token.text!r}")
                value |= cf.parse(part)
            except ValueError as exc:
                raise line.error(column, str(exc).replace("clone flag", "flag")) from None
            column += len(part) + 1
        return value

    def set_tid(self, line: _Line, token: _Token) -> tuple[int, ...]:
        if not token.text.startswith("set_tid="):
            raise line.error(token.column, f"expected set_tid=N,N,..., not {token.text!r}")
        body = token.text[len("set_tid=") :]
        column = token.column + len("set_tid=")
        tids: list[int] = []
        for part in body.split(","):
            if not _INT.match(part):
                raise line.error(column, f"set_tid takes integers, not {part!r}")
            tids.append(self.integer(line, _Token(part, column), -(2**31), 2**31 - 1, "pid"))
            column += len(part) + 1
        return tuple(tids)

    def integer(self, line: _Line, token: _Token, low: int, high: int, what: str) -> int:
        if not _INT.match(token.text):
            raise line.error(token.column, f"{what} must be a number, not {token.text!r}")
        value = int(token.text)
        if not low <= value <= high:
            raise line.error(token.column, f"{what} out of range {low}..{high}: {value}")
        return value

    def signal(self, line: _Line, token: _Token, allow_zero: bool) -> int:
        if allow_zero and token.text == "0":
            return 0
        try:
            return signal_number(token.text)
        except ValueError as exc:
            raise line.error(token.column, str(exc)) from None


# ---- entry points ---------------------------------------------------------------------


def parse(source: str | os.PathLike[str], path: str | None = None) -> Scenario:
    """Parse a scenario: ``source`` is the text, or a path-like naming a .pidns file.

    ``path`` names the text in error messages (default ``<string>``, or the file's path).
    Raises ScenarioError on every problem; a file that cannot be read is one too.
    """
    if isinstance(source, os.PathLike):
        return parse_file(source)
    return _Parser(path or "<string>").run(source)


MAX_FILE_BYTES = 1 << 20  # a scenario of a million bytes is already ~50,000 steps


def parse_file(path: str | os.PathLike[str]) -> Scenario:
    """Read and parse a .pidns file (UTF-8)."""
    name = os.fspath(path)
    try:
        with open(name, "rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)  # bounded: /dev/zero is a "file" too
    except OSError as exc:
        raise ScenarioError(name, 1, 1, f"cannot read: {exc.strerror or exc}") from None
    if len(data) > MAX_FILE_BYTES:
        raise ScenarioError(name, 1, 1, f"larger than {MAX_FILE_BYTES} bytes: not a scenario")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        before = data[: exc.start]
        line = before.count(b"\n") + 1
        column = exc.start - (before.rfind(b"\n") + 1) + 1
        raise ScenarioError(name, line, column, "not UTF-8") from None
    return _Parser(name).run(text)
