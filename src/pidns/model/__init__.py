"""An executable model of the Linux kernel's pid-namespace subsystem.

    from pidns.model import Kernel
    k = Kernel()                       # profile "6.18"; Kernel(profile="3.8") for the seed
    a = k.fork(k.init)
    k.unshare(a, CLONE_NEWPID)         # a stays where it is ...
    b = k.fork(a)                      # ... its first child is pid 1 of the new namespace
    assert k.getpid(b) == 1 and k.getppid(b) == 0

Files follow the kernel's lifecycle split: ``namespace`` (pid numbers, namespaces),
``task`` (a process and its state machine), ``create`` (fork/clone/unshare/setns),
``exit`` (exit, reparenting, zap, wait), ``signal`` (kill, dispositions), ``profiles``
(where v3.8 and v6.18 differ), ``kernel`` (the syscall surface).
"""

from pidns.model.errors import KernelError, Unmodeled, WouldBlock
from pidns.model.exit import WaitResult
from pidns.model.kernel import PTHREAD_FLAGS, Kernel, WaitFor
from pidns.model.namespace import PidNamespace, UserNamespace
from pidns.model.pidfd import PIDFD_THREAD, Pidfd
from pidns.model.profiles import PROFILES, Profile
from pidns.model.task import Caller, Disposition, Task, TaskState, Thread

__all__ = [
    "PIDFD_THREAD",
    "PROFILES",
    "PTHREAD_FLAGS",
    "Caller",
    "Disposition",
    "Kernel",
    "KernelError",
    "PidNamespace",
    "Pidfd",
    "Profile",
    "Task",
    "TaskState",
    "Thread",
    "Unmodeled",
    "UserNamespace",
    "WaitFor",
    "WaitResult",
    "WouldBlock",
]
