"""The real backend: runs a scenario on the running kernel, through puppet processes.

The runner (this module, in the calling process) makes the *world*: a fresh pid
namespace one level below its own, inside a fresh user namespace mapping the caller to
root when the caller lacks CAP_SYS_ADMIN. Its init is ``root`` (puppet.world_init, the
runner's child: pid 1 in the world, a session leader that reaps every zombie it gets)
and ``A`` is root's first child. Every named process is a puppet (pidns.scenario.puppet)
that performs the calls it is sent; fork and clone are the puppets' own.

After each step the runner *settles*: it reads every process of the world from /proc as
seen from outside (status, stat) and waits until nothing is in flight (see
``_World.unsettled``): every signal sent has been acted on, every dying process is a
zombie or an init that waits for its namespace to empty (PF_EXITING), root has reaped its
zombies, and every blocked wait that can return has returned. ``blocks`` is decided
without a timeout: a puppet reports it after WNOHANG found nothing and then really
blocks; a step sent to a stopped puppet blocks until it is continued.

When a run ends, on any path, nothing of it is left: ``close`` SIGKILLs root from the
runner's namespace, and the kernel kills every process of the world and of the
namespaces below it (kernel/pid_namespace.c:zap_pid_ns_processes) before root's own
death is reported; root dies by PR_SET_PDEATHSIG if the runner dies first.
"""

from __future__ import annotations

from pidns.linux import features
from pidns.scenario.ast import Outcome, Scenario, Snapshot, Step
from pidns.scenario.backend import UnsupportedStep
from pidns.scenario.real_proc import own_nspid, privileged
from pidns.scenario.real_world import World

# What the runner and its puppets use (docs/kernels.md): without one, every scenario is
# reported unsupported on this kernel, naming it, instead of failing.
# Kernels without clone3, pidfds, NSpid or NS_GET_PARENT (before 5.3, 4.1, 4.9) use raw
# clone(2), kill(2)/waitpid and the runner's own bookkeeping instead (real_world._born).
NEEDS = ("signalfd",)


class RealBackend:
    """The Backend of pidns.scenario.backend on the running kernel.

    ``userns``: make the world inside a new user namespace (default: only when the caller
    lacks CAP_SYS_ADMIN). ``settle_timeout``: seconds after which a world that does not
    settle is a BackendError (a safety net: no result is ever decided by a timeout).
    The world lives as long as the thread that called ``start`` (PR_SET_PDEATHSIG).

    For a model of the same world: ``world_level`` is the world's kernel level (one below
    the runner's), ``mapped_uids`` the uids its user namespace maps (None: all of them).
    """

    name = "real"

    def __init__(self, userns: bool | None = None, settle_timeout: float = 10.0) -> None:
        self.userns = (not privileged()) if userns is None else userns
        self.settle_timeout = settle_timeout
        self.world: World | None = None
        self.world_level = len(own_nspid())
        self.mapped_uids: frozenset[int] | None = frozenset({0}) if self.userns else None

    def start(self, scenario: Scenario) -> None:
        self.close()
        lacking = features.first_missing(NEEDS)
        if lacking is not None:
            raise UnsupportedStep(features.unsupported(lacking, "the real backend"))
        self.world = World(self.userns, self.settle_timeout)
        self.world.make()

    def step(self, step: Step) -> Outcome:
        assert self.world is not None, "start() first"
        return self.world.step(step)

    def can_act(self, name: str) -> bool:
        assert self.world is not None, "start() first"
        return self.world.can_act(name)

    def pid_seen_by(self, actor: str, target: str) -> int:
        assert self.world is not None, "start() first"
        return self.world.pid_seen_by(actor, target)

    def state_of(self, name: str) -> str:
        assert self.world is not None, "start() first"
        return self.world.state(self.world.procs[name])

    def nspid_of(self, name: str) -> tuple[int, ...]:
        assert self.world is not None, "start() first"
        p = self.world.procs[name]
        return () if p.reaped else p.nspid

    def holds(self, actor: str, pidfd: str) -> bool:
        assert self.world is not None, "start() first"
        return self.world.holds(actor, pidfd)

    def fdinfo(self, actor: str, pidfd: str) -> tuple[int, ...]:
        assert self.world is not None, "start() first"
        return self.world.fdinfo(actor, pidfd)

    def changes(self) -> Snapshot:
        assert self.world is not None, "start() first"
        return self.world.changes()

    def close(self) -> None:
        world, self.world = self.world, None
        if world is not None:
            world.close()

    def __enter__(self) -> RealBackend:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


__all__ = ["RealBackend", "privileged"]
