"""``pidns ls``, ``pidns tree`` and ``pidns pid``: seeing pid namespaces (docs/introspection.md).

Exit statuses:
  ls    0 listed; 2 bad usage or /proc unreadable.
  tree  0 shown (also when some processes could not be inspected: a note on stderr says
        how many); 1 dot failed to write the picture; 2 bad usage, unknown PID or
        namespace, /proc unreadable; 127 graphviz (dot) is not installed.
  pid   0 translated; 1 the process has no pid in the target namespace (prints 0), or no
        process has that pid in the source namespace; 2 bad usage or unknown namespace.
  any   130 interrupted (Ctrl-C); 141 output pipe closed.

Start-up is most of a run (``pidns ls`` is measured against lsns), so imports stay lean:
the options are scanned by pidns.cli.options rather than argparse, and graphviz is
imported only for --svg/--png.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable

from pidns.cli.options import (
    HELP,
    PID_MAX_LIMIT,
    UsageError,
    check_known,
    is_number,
    scan,
    usage_error,
)
from pidns.core import exits
from pidns.linux import features, namespaces, translate
from pidns.render import data, proc_view, text
from pidns.render.view import SystemView

NS_FORMS = """NS names a pid namespace in one of three ways:
  ID         its id, as pidns ls shows it (or its inode, as lsns shows it)
  pid:PID    the namespace that process PID is in
  PATH       an nsfs file, such as /proc/PID/ns/pid (or a bind mount of one)"""

USAGE = {
    "ls": """usage: pidns ls [--json]

List every pid namespace you can see: its id, level, parent, owning user namespace,
its init's pid and command, and how many processes are in it.

  --json     one JSON object (layout: docs/introspection.md)""",
    "tree": f"""usage: pidns tree [PID | --ns NS] [--json] [--svg FILE] [--png FILE]

Show processes nested by pid namespace, each with its pid at every level from the
root inwards (7412/3/1) and its command. PID or --ns NS shows only that namespace
and the ones below it.

  --ns NS     show the namespace NS and its descendants
  --json      one JSON object (layout: docs/introspection.md)
  --svg FILE  draw it to FILE as SVG, one nested cluster per namespace (graphviz)
  --png FILE  draw it to FILE as PNG (graphviz)

{NS_FORMS}""",
    "pid": f"""usage: pidns pid PID [--from NS] [--to NS] [--json]

Translate PID, as numbered in namespace --from, into its number in namespace --to.
Both default to your own pid namespace. Prints 0 (exit status 1) when --to cannot
see the process.

  --from NS  the namespace in which PID is numbered
  --to NS    the namespace whose number for the process to print
  --json     one JSON object (layout: docs/introspection.md)

{NS_FORMS}""",
}


def main(name: str, argv: list[str]) -> int:
    prog = f"pidns {name}"
    try:
        if name not in USAGE:
            raise UsageError(f"unknown command {name!r}")
        if any(word in HELP for word in argv):
            print(USAGE[name])
            return 0
        if name == "ls":
            return _ls(argv, prog)
        if name == "tree":
            return _tree(argv, prog)
        return _pid(argv, prog)
    except UsageError as e:
        return usage_error(prog, e)
    except namespaces.NamespaceError as e:
        print(f"{prog}: {e}", file=sys.stderr)
        return exits.EXIT_USAGE
    except KeyboardInterrupt:
        return exits.EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (pidns tree | head): say nothing more, as SIGPIPE would.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return exits.EXIT_BROKEN_PIPE


def parse(
    argv: list[str], flags: tuple[str, ...], valued: tuple[str, ...], max_positional: int
) -> tuple[dict[str, str | bool], list[str]]:
    """Options (``--name`` flags, ``--name VALUE`` or ``--name=VALUE``) and positionals."""
    scanned, positional = scan(argv, valued, command=False)
    check_known(scanned, flags + valued)
    found: dict[str, str | bool] = {n: (True if n in flags else v) for n, v in scanned}
    if len(positional) > max_positional:
        raise UsageError(f"unexpected argument {positional[max_positional]!r}")
    return found, positional


def _ls(argv: list[str], prog: str) -> int:
    options, _ = parse(argv, ("--json",), (), 0)
    view = _read(proc_view.namespaces_picture, prog)
    if view is None:
        return exits.EXIT_USAGE
    names = _names()
    if options.get("--json"):
        _print_json(data.ls_document(view, names))
    else:
        _print(text.ls_table(view, names))
    _note(prog, view)
    return 0


def _names() -> dict[int, str]:
    """The named namespaces (pidns run --name), by pid namespace inode."""
    from pidns.linux import registry  # noqa: PLC0415 (a directory listing)

    return {entry.pid_ns: entry.name for entry in registry.entries()}


def _tree(argv: list[str], prog: str) -> int:
    options, positional = parse(argv, ("--json",), ("--ns", "--svg", "--png"), 1)
    pid = _pid_argument(positional[0]) if positional else None
    spec = options.get("--ns")
    if pid is not None and spec is not None:
        raise UsageError("give PID or --ns, not both")
    whole = _read(proc_view.system_picture, prog)
    if whole is None:
        return exits.EXIT_USAGE
    view = _select(whole, pid, str(spec) if spec is not None else None)
    for fmt in ("svg", "png"):
        path = options.get(f"--{fmt}")
        if path is not None:
            status = _draw(view, str(path), fmt, prog)
            if status:
                return status
    if options.get("--json"):
        _print_json(data.tree_document(view))
    elif "--svg" not in options and "--png" not in options:
        _print(text.tree(view))
    _note(prog, view)
    return 0


# What `pidns pid` cannot do without (docs/kernels.md): it names the namespaces it is
# given by NS_GET_NSTYPE and translates through NSpid where NS_GET_PID_* are absent.
PID_NEEDS = ("ns_get_nstype", "nspid")


def _pid(argv: list[str], prog: str) -> int:
    options, positional = parse(argv, ("--json",), ("--from", "--to"), 1)
    if not positional:
        raise UsageError("PID is required")
    try:
        lacking = features.first_missing(PID_NEEDS)
    except OSError:  # no /proc to probe with: opening the namespace below says so
        lacking = None
    if lacking is not None:
        print(f"{prog}: {features.Missing(lacking, prog)}", file=sys.stderr)
        return exits.EXIT_SETUP
    pid = _pid_argument(positional[0])
    source_spec = str(options.get("--from", "/proc/self/ns/pid"))
    target_spec = str(options.get("--to", "/proc/self/ns/pid"))
    source = namespaces.open_namespace(source_spec)
    try:
        target = namespaces.open_namespace(target_spec)
        try:
            try:
                result, method = translate.translate_reporting(pid, source, target)
            except ProcessLookupError:
                where = options.get("--from", "your pid namespace")
                print(f"{prog}: no process with pid {pid} in {where}", file=sys.stderr)
                return exits.EXIT_FAIL  # no pid in the target namespace
            if options.get("--json"):
                source_id, id_source = namespaces.name_of(source)
                target_id, _ = namespaces.name_of(target)
                doc = data.pid_document(
                    pid=pid,
                    source=source_id,
                    target=target_id,
                    result=result,
                    method=method,
                    id_source=id_source,
                )
                _print_json(doc)
            else:
                _print(str(result))
        finally:
            os.close(target)
    finally:
        os.close(source)
    return 0 if result else exits.EXIT_FAIL  # no pid in the target namespace


def _select(view: SystemView, pid: int | None, spec: str | None) -> SystemView:
    """The part of ``view`` that ``tree PID`` or ``tree --ns NS`` asks for."""
    if pid is not None:
        process = view.lookup().process(pid)
        if process is None:
            raise namespaces.NamespaceError(f"no process {pid} is visible")
        return view.subtree(process.ns)
    if spec is None:
        return view
    if is_number(spec):
        number = int(spec)
        for ns in view.namespaces:
            if ns.id == number:
                return view.subtree(ns.id)
        for ns in view.namespaces:
            if ns.inode == number:
                return view.subtree(ns.id)
        raise namespaces.NamespaceError(f"no pid namespace {number} is visible (see pidns ls)")
    if spec.startswith("pid:") and is_number(spec[4:]):
        return _select(view, _pid_argument(spec[4:]), None)
    fd = namespaces.open_namespace(spec)
    try:
        inode = os.fstat(fd).st_ino
    finally:
        os.close(fd)
    for ns in view.namespaces:
        if ns.inode == inode:
            return view.subtree(ns.id)
    raise namespaces.NamespaceError(f"the pid namespace of {spec} has no visible process")


def _draw(view: SystemView, path: str, fmt: str, prog: str) -> int:
    from pidns.render import graphviz  # noqa: PLC0415 (shutil, subprocess: only when drawing)

    try:
        graphviz.draw(view, path, fmt)
    except graphviz.GraphvizMissing as e:
        print(f"{prog}: {e}", file=sys.stderr)
        return exits.EXIT_NOT_FOUND  # the program dot is not found
    except (graphviz.GraphvizFailed, OSError) as e:
        print(f"{prog}: {e}", file=sys.stderr)
        return exits.EXIT_FAIL  # dot failed
    return 0


def _read(build: Callable[[], SystemView], prog: str) -> SystemView | None:
    """Run a /proc reader; a one-line error (and None) if /proc cannot be read."""
    try:
        view = build()
    except OSError as e:
        print(f"{prog}: cannot read /proc: {e.strerror or e}", file=sys.stderr)
        return None
    if not view.namespaces and not view.hidden_processes:
        # not even our own process: no proc mounted there (an empty table would be a lie)
        print(f"{prog}: cannot read /proc: it shows no process (is proc mounted?)", file=sys.stderr)
        return None
    return view


def _pid_argument(word: str) -> int:
    if not is_number(word) or not 0 < int(word) <= PID_MAX_LIMIT:
        raise UsageError(f"not a pid: {word!r}")
    return int(word)


def _print(output: str) -> None:
    """Text for people: lines cut to the terminal's width when it is one (as ps does)."""
    if sys.stdout.isatty():
        width = os.get_terminal_size(sys.stdout.fileno()).columns
        output = "\n".join(line[:width] for line in output.split("\n"))
    reconfigure = getattr(sys.stdout, "reconfigure", None)
    if reconfigure is not None:  # a command line need not be valid in the locale's encoding
        reconfigure(errors="replace")
    print(output)
    sys.stdout.flush()


def _print_json(doc: object) -> None:
    print(json.dumps(doc))
    sys.stdout.flush()


def _note(prog: str, view: SystemView) -> None:
    note = text.hidden_note(view)
    if note is not None:
        print(f"{prog}: {note}", file=sys.stderr)
