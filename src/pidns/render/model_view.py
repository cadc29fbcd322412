"""The model's state as a renderer picture: the adapter that lets ``pidns sim --svg``
draw the model through the same renderer ``pidns tree`` uses for /proc."""

from __future__ import annotations

from collections.abc import Mapping

from pidns.model import Kernel, KernelError, PidNamespace, Task, TaskState
from pidns.render.view import ID_MODEL, NamespaceView, ProcessView, SystemView


def from_model(kernel: Kernel, names: Mapping[Task, str] | None = None) -> SystemView:
    """Every namespace and unreaped task of ``kernel``; pids count from its root
    namespace (the scenario's world). ``names`` labels tasks (a scenario's names)."""
    names = names or {}
    tasks = list(kernel.live_tasks())
    members: dict[int, int] = {}
    for task in tasks:
        members[task.ns.id] = members.get(task.ns.id, 0) + 1
    namespaces = []
    for ns in kernel.namespaces:
        init = ns.child_reaper
        alive = init is not None and init.state is not TaskState.REAPED
        namespaces.append(
            NamespaceView(
                id=ns.id,
                level=ns.depth,
                parent=_parent_id(kernel, ns),
                owner=ns.user_ns.id,
                init=init.numbers[0] if alive and init is not None else None,
                nprocs=members.get(ns.id, 0),
            )
        )
    processes = tuple(
        ProcessView(
            pids=task.numbers,
            ns=task.ns.id,
            ppid=0 if task.parent is None else task.parent.numbers[0],
            command=names.get(task, f"task {task.numbers[0]}"),
            state=_state(task),
        )
        for task in tasks
    )
    return SystemView(tuple(namespaces), processes, id_source=ID_MODEL)


def _parent_id(kernel: Kernel, ns: PidNamespace) -> int | None:
    """As procview names parents: NS_GET_PARENT asked from the picture's root (EPERM for
    the root itself, whose parent is outside the picture)."""
    try:
        return kernel.ns_parent(kernel.init, ns).id
    except KernelError:
        return None


def _state(task: Task) -> str:
    """/proc/PID/stat of a group shows its leader: a leader that exit(2)ed while other
    threads run is a zombie there, though the process lives."""
    if task.leader_exited and task.state is TaskState.RUNNING:
        return "zombie"
    return str(task.state)
