"""The running system as a picture for the renderer (pidns.render.view), read from /proc:
the counterpart of model_view, which draws the model. (In render, not linux, so that
linux never imports render.)

``namespaces_picture`` is what ``pidns ls`` shows (the namespaces and their inits);
``system_picture`` what ``pidns tree`` shows (every process it can see, in its namespace).
Pids are counted in the /proc mount's namespace, the picture's root.
"""

from __future__ import annotations

from pidns.linux import namespaces, proc
from pidns.render.view import NamespaceView, ProcessView, SystemView

# fs/proc/array.c:task_state_array, by the letter /proc/PID/status shows.
STATE_WORDS = {
    "R": "running",
    "S": "sleeping",
    "D": "disk sleep",
    "T": "stopped",
    "t": "tracing stop",
    "X": "dead",
    "Z": "zombie",
    "P": "parked",
    "I": "idle",
}


def namespaces_picture(root: str = "/proc") -> SystemView:
    """Every visible pid namespace, with only their inits as processes."""
    found = namespaces.discover(root)
    inits = [ns.init for ns in found.namespaces.values() if ns.init is not None]
    return _picture(found, inits, root)


def system_picture(root: str = "/proc") -> SystemView:
    """Every visible pid namespace and every process placed in one."""
    found = namespaces.discover(root, every_status=True)
    members = [pid for ns in found.namespaces.values() for pid in ns.members]
    return _picture(found, members, root)


def _picture(found: namespaces.Discovery, pids: list[int], root: str) -> SystemView:
    spaces = [ns for ns in found.namespaces.values() if ns.level is not None]
    ids = {ns.inode: ns.id for ns in spaces}
    where = {pid: ns.id for ns in spaces for pid in ns.members}
    processes: list[ProcessView] = []
    for pid in sorted(pids):
        brief = found.briefs.get(pid) or proc.brief(pid, root)
        if brief is None or pid not in where:
            continue  # reaped since listed
        processes.append(
            ProcessView(
                pids=brief.nspid,
                ns=where[pid],
                ppid=brief.ppid,
                command=proc.command(pid, brief.name, root),
                state=STATE_WORDS.get(brief.state, brief.state),
            )
        )
    return SystemView(
        namespaces=tuple(
            NamespaceView(
                id=ns.id,
                level=ns.level,
                parent=ids.get(ns.parent) if ns.parent is not None else None,
                owner=ns.owner,
                init=ns.init,
                nprocs=len(ns.members),
                inode=ns.inode,
            )
            for ns in spaces
            if ns.level is not None
        ),
        processes=tuple(processes),
        id_source=found.id_source,
        hidden_processes=len(found.hidden),
        hidden_namespaces=found.hidden_namespaces + len(found.namespaces) - len(spaces),
    )
