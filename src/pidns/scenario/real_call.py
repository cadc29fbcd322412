"""A call the real backend sent a puppet, until its reply is taken: a checked state
machine, as the model's ``TaskState`` is (``Call.move_to`` is the one place it changes).

    AWAITED --B--> BLOCKED          the step's own call blocked in wait: a completion later
    AWAITED -----> QUEUED --B--> BLOCKED
                                    sent to a stopped puppet: it runs once continued

A call leaves the machine when its reply is taken (the step's result when AWAITED, a
completion otherwise), or when its process dies (a pending call never completes).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from pidns.scenario.ast import Step
from pidns.scenario.backend import BackendError


class CallState(enum.Enum):
    """Where a call sent to a puppet is, until its reply is taken (then it is gone)."""

    AWAITED = "awaited"  # the step's own call: its reply is the step's result
    BLOCKED = "blocked"  # the puppet said it blocks (asleep in waitpid): a completion later
    QUEUED = "queued"  # sent to a stopped puppet: it runs once the puppet is continued


_NEXT_CALL_STATE: dict[CallState, frozenset[CallState]] = {
    CallState.AWAITED: frozenset({CallState.BLOCKED, CallState.QUEUED}),
    CallState.QUEUED: frozenset({CallState.BLOCKED}),
    CallState.BLOCKED: frozenset(),
}


@dataclass(slots=True)
class Call:
    """A call that has not returned yet."""

    step: Step
    state: CallState = CallState.AWAITED

    def move_to(self, new: CallState) -> None:
        """The one place a call changes state; refuses edges the machine lacks."""
        if new not in _NEXT_CALL_STATE[self.state]:
            raise BackendError(f"line {self.step.line}: call {self.state.value} -> {new.value}")
        self.state = new
