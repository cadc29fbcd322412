"""Why namespaces are refused here, and the one fix that applies: the single diagnosis
behind every setup failure (exit status 125) of ``pidns run`` and ``pidns exec``, and
behind ``pidns doctor``.

Two halves:

- **facts**, read without side effects: the sysctls that gate namespaces, the caller's
  capabilities, seccomp mode and no_new_privs (/proc/self/status), the /proc mount and
  what is mounted over parts of it (/proc/self/mountinfo), whether this is a container;
- **refusal(step, errno)**: the cause of a failed step and its fix, in one line. ``step``
  names what failed, as the init reports it: ``clone`` (the clone3 that makes the
  namespaces), ``user_namespace`` (writing the id maps), ``mount`` (making the mounts
  private), ``proc`` (mounting the new /proc), ``setns`` (joining, for ``pidns exec``).

Where each refusal comes from in the kernel:

- CLONE_NEWPID / CLONE_NEWNS without CAP_SYS_ADMIN in the caller's user namespace: EPERM
  (kernel/nsproxy.c:copy_namespaces); pidns then asks for a user namespace too;
- ``user.max_user_namespaces`` / ``user.max_pid_namespaces`` are per-user-namespace
  counts: 0 refuses every creation with ENOSPC (kernel/ucount.c:inc_ucount), as do 32
  nested levels (kernel/user_namespace.c:create_user_ns, kernel/pid_namespace.c:
  create_pid_namespace);
- Debian's and Ubuntu's ``kernel.unprivileged_userns_clone = 0``: EPERM for an
  unprivileged CLONE_NEWUSER (a distribution patch of kernel/fork.c);
- AppArmor's ``kernel.apparmor_restrict_unprivileged_userns = 1`` (Ubuntu 23.10+): the
  user namespace is made but its capabilities are denied, so the first privileged step
  (the id maps, a mount) fails with EPERM (security/apparmor/lsm.c:apparmor_userns_create);
- a seccomp filter (Seccomp: 2) answers the syscall itself: Docker's and Podman's default
  profiles refuse unshare, setns and clone with namespace flags with EPERM, and clone3
  with ENOSYS, so that glibc falls back to clone whose flags the filter can see;
- mounting a procfs inside a user namespace needs an existing procfs fully visible in the
  mount namespace: a file or directory mounted over part of /proc (a container's masked
  paths) makes it "too revealing", EPERM (fs/namespace.c:mount_too_revealing,
  mnt_already_visible). On 6.18 that holds for ``subset=pid`` too (the proposed relaxation
  for pid-only procfs was not merged); ``pidns doctor`` tries it for real.

Only the standard library, and nothing here runs on ``pidns run``'s success path: the
launcher imports this module when something has already failed.
"""

from __future__ import annotations

import errno
import os
import sys
from typing import NamedTuple

from pidns.linux import proc, userns

# (sysctl name, /proc/sys path): every knob that gates the namespaces pidns makes.
SYSCTLS = (
    ("user.max_user_namespaces", "/proc/sys/user/max_user_namespaces"),
    ("user.max_pid_namespaces", "/proc/sys/user/max_pid_namespaces"),
    ("user.max_mnt_namespaces", "/proc/sys/user/max_mnt_namespaces"),
    ("kernel.unprivileged_userns_clone", "/proc/sys/kernel/unprivileged_userns_clone"),
    (
        "kernel.apparmor_restrict_unprivileged_userns",
        "/proc/sys/kernel/apparmor_restrict_unprivileged_userns",
    ),
)
SECCOMP_FILTER = 2  # /proc/self/status "Seccomp:" (include/uapi/linux/seccomp.h)
SECCOMP_MODES = {0: "disabled", 1: "strict", 2: "filter"}


def read_sysctls() -> dict[str, int | None]:
    """The current value of each knob in SYSCTLS; None where the kernel has no such knob."""
    values: dict[str, int | None] = {}
    for name, path in SYSCTLS:
        try:
            with open(path, "rb") as f:
                values[name] = int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            values[name] = None
    return values


class Status(NamedTuple):
    """The security fields of /proc/self/status."""

    cap_eff: int  # the effective capability mask
    seccomp: int  # 0 disabled, 1 strict, 2 filter
    seccomp_filters: int
    no_new_privs: bool

    def has(self, cap: int) -> bool:
        return bool(self.cap_eff >> cap & 1)


def read_status(path: str = "/proc/self/status") -> Status:
    try:
        fields = proc.status_fields(path)
    except OSError:
        fields = {}
    return Status(
        cap_eff=int(fields.get("CapEff", "0"), 16),
        seccomp=int(fields.get("Seccomp", "0")),
        seccomp_filters=int(fields.get("Seccomp_filters", "0")),
        no_new_privs=fields.get("NoNewPrivs", "0") == "1",
    )


class ProcMount(NamedTuple):
    """The caller's /proc as mountinfo shows it (fs/proc_namespace.c:show_mountinfo)."""

    mounted: bool  # a procfs is mounted on /proc
    options: str  # its superblock options (hidepid=, subset=)
    masked: tuple[str, ...]  # mount points strictly below /proc (a container's masks)

    def option(self, name: str) -> str | None:
        for item in self.options.split(","):
            key, _, value = item.partition("=")
            if key == name:
                return value
        return None


def read_proc_mount(path: str = "/proc/self/mountinfo") -> ProcMount:
    mounted, options = False, ""
    masked: list[str] = []
    try:
        with open(path, "rb") as f:
            lines = f.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return ProcMount(False, "", ())
    for line in lines:
        fields = line.split()
        if len(fields) < 10:
            continue
        point = fields[4]
        sep = fields.index("-", 6)
        fstype, super_options = fields[sep + 1], fields[sep + 3] if len(fields) > sep + 3 else ""
        if point == "/proc" and fstype == "proc":
            mounted, options = True, super_options
            masked = []  # a later mount over /proc hides what was mounted below the earlier
        elif point.startswith("/proc/"):
            masked.append(point)
    return ProcMount(mounted, options, tuple(masked))


def container() -> str | None:
    """The container engine this process runs under, if it says so: Docker, Podman,
    Kubernetes (their own markers), else None."""
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        return "kubernetes"
    if os.path.exists("/run/.containerenv"):
        return "podman"
    if os.path.exists("/.dockerenv"):
        return "docker"
    return None


class Facts:
    """What the diagnosis reads, once."""

    def __init__(self) -> None:
        self.sysctls = read_sysctls()
        self.status = read_status()
        self.proc = read_proc_mount()
        self.container = container()
        self.interpreter = os.path.realpath(sys.executable)

    @property
    def privileged(self) -> bool:
        return self.status.has(userns.CAP_SYS_ADMIN)


class Refusal(NamedTuple):
    """Why a step failed, and what to do about it here."""

    cause: str
    fix: str

    def __str__(self) -> str:
        return f"{self.cause}; {self.fix}" if self.fix else self.cause


def _container_flag(facts: Facts, docker: str, podman: str | None = None) -> str:
    engine = facts.container
    if engine == "kubernetes":
        return f"give the pod's container that right (its securityContext; {docker} in Docker)"
    if engine == "podman":
        return f"start the container with {podman or docker}"
    return f"start the container with {docker}"


_MAX_SYSCTL = 2**31 - 1  # the largest value of the ucount sysctls (kernel/ucount.c)


def _or_root() -> str:
    """The "or run as root" of a fix, unless the caller is root already."""
    return "" if os.geteuid() == 0 else ", or run as root"


def refusal(step: str, err: int, *, user: bool, facts: Facts | None = None) -> Refusal:
    """Why ``step`` failed with ``err``, and the fix. ``user``: a user namespace was
    asked for in the same call (the caller lacks CAP_SYS_ADMIN, or asked for a mapping)."""
    facts = facts or Facts()
    sysctls = facts.sysctls
    seccomp = facts.status.seccomp == SECCOMP_FILTER
    denied = err in (errno.EPERM, errno.EACCES)
    if step == "clone" and err == errno.ENOSYS:
        if seccomp:
            return Refusal(
                "clone3 is refused by a seccomp filter (ENOSYS, as Docker's default profile "
                "answers it)",
                _container_flag(facts, "--security-opt seccomp=unconfined"),
            )
        return Refusal("this kernel has no clone3 (before 5.3)", "use a kernel >= 5.3")
    if user and step in ("clone", "user_namespace", "mount", "setns"):
        limit = sysctls.get("user.max_user_namespaces")
        if limit == 0:
            return Refusal(
                "user namespaces are disabled (sysctl user.max_user_namespaces = 0)",
                "enable them with 'sysctl -w user.max_user_namespaces=15000'" + _or_root(),
            )
        if sysctls.get("kernel.unprivileged_userns_clone") == 0 and not facts.privileged:
            return Refusal(
                "unprivileged user namespaces are disabled "
                "(sysctl kernel.unprivileged_userns_clone = 0)",
                "enable them with 'sysctl -w kernel.unprivileged_userns_clone=1'" + _or_root(),
            )
        if (
            sysctls.get("kernel.apparmor_restrict_unprivileged_userns") == 1
            and denied
            and step != "clone"
        ):
            return Refusal(
                "AppArmor restricts unprivileged user namespaces "
                "(sysctl kernel.apparmor_restrict_unprivileged_userns = 1): the namespace is "
                "made, its capabilities denied",
                f"allow them for {facts.interpreter}, the interpreter pidns runs on: write "
                f"'abi <abi/4.0>, profile pidns {facts.interpreter} flags=(unconfined) "
                "{ userns, }' to /etc/apparmor.d/pidns and load it with 'apparmor_parser -r "
                "/etc/apparmor.d/pidns' (or 'sysctl -w "
                "kernel.apparmor_restrict_unprivileged_userns=0')" + _or_root(),
            )
    if seccomp and err == errno.EPERM and step in ("clone", "setns"):
        return Refusal(
            "a seccomp filter refuses namespace system calls (Seccomp: 2 in "
            "/proc/self/status; Docker's and Podman's default profiles do this)",
            _container_flag(facts, "--security-opt seccomp=unconfined"),
        )
    if step in ("clone", "user_namespace") and err == errno.ENOSPC:
        knob = "user.max_user_namespaces" if user else "user.max_pid_namespaces"
        limit = sysctls.get(knob)
        if limit is not None and limit >= _MAX_SYSCTL:
            # kernel/ucount.c:inc_ucount counts the new namespace against the limit of
            # every user namespace up the chain: here one above ours is full
            return Refusal(
                f"a namespace limit of a parent user namespace is reached (this one's "
                f"{knob} is already {limit}), or 32 nested levels",
                f"raise {knob} in the parent namespace (the host's, or the container's)",
            )
        if user:
            return Refusal(
                f"the user namespace limit is reached (sysctl user.max_user_namespaces = "
                f"{limit}, or 32 nested levels)",
                "raise it with 'sysctl -w user.max_user_namespaces=15000'",
            )
        return Refusal(
            f"the pid namespace limit is reached (sysctl user.max_pid_namespaces = {limit}, "
            "or 32 nested levels)",
            "raise it with 'sysctl -w user.max_pid_namespaces=15000'",
        )
    if step == "clone" and err == errno.EPERM:
        if user:
            return Refusal(
                "creating a user namespace is not permitted here (a chroot, or a security "
                "module, refuses it)",
                "" if os.geteuid() == 0 else "run as root",
            )
        return Refusal(
            "creating a pid namespace needs CAP_SYS_ADMIN",
            _container_flag(facts, "--cap-add SYS_ADMIN")
            if facts.container
            else "try --map-root-user",
        )
    if step == "user_namespace" and err == errno.EACCES and not _dumpable():
        # /proc/PID files of a non-dumpable process belong to root (fs/proc/base.c:
        # task_dump_owner), so it cannot write its own uid_map.
        return Refusal(
            "cannot write the user namespace's id maps: this process is not dumpable "
            "(it changed uid without exec)",
            "exec pidns instead, or prctl(PR_SET_DUMPABLE, 1)",
        )
    if step == "proc" and denied:
        return proc_refusal(user, facts)
    what = {
        "clone": "cannot create the namespaces",
        "user_namespace": "cannot write the user namespace's id maps",
        "mount": "cannot set the mounts' propagation",
        "proc": "cannot mount a fresh /proc",
        "root": "cannot change the root directory",
        "cwd": "cannot change to the working directory",
        "setns": "cannot join the namespaces",
        "process_group": "cannot give the init a process group of its own",
        "signals": "cannot read signals in the init (signalfd)",
        "parent_death_signal": "cannot arm the init's parent-death signal",
    }.get(step, "cannot set the namespace up")
    return Refusal(f"{what}: {os.strerror(err)}", "")


def missing_call(call: str, err: int, needed_for: str = "") -> str | None:
    """The one line for a call the launcher needs that failed with ENOSYS or EPERM: a
    kernel feature that is missing (linux/features.py), or, on a release that has it and
    under a seccomp filter, the filter's refusal. None for any other failure."""
    from pidns.linux import features  # noqa: PLC0415

    row = features.FEATURES.get(call)
    if row is None or err not in (errno.ENOSYS, errno.EPERM):
        return None
    facts = Facts()
    has_it = features.release_tuple() >= features.release_tuple(row.since)
    if facts.status.seccomp == SECCOMP_FILTER and has_it:
        purpose = f", needed for {needed_for}" if needed_for else ""
        return str(
            Refusal(
                f"{row.what} is refused by a seccomp filter ({errno.errorcode[err]}; "
                f"Linux {features.release()} has it){purpose}",
                _container_flag(facts, "--security-opt seccomp=unconfined"),
            )
        )
    return str(features.Missing(row, needed_for))


def proc_refusal(user: bool, facts: Facts, subset_allowed: bool | None = None) -> Refusal:
    """Why a fresh /proc cannot be mounted, and the alternatives. ``subset_allowed``:
    whether a procfs with subset=pid mounts here (None: try it now, in a throw-away child)."""
    if user and facts.sysctls.get("kernel.apparmor_restrict_unprivileged_userns") == 1:
        return refusal("user_namespace", errno.EPERM, user=True, facts=facts)
    if not user:
        return Refusal("cannot mount a fresh /proc: permission denied", "use --no-mount-proc")
    if not facts.proc.mounted:
        cause = (
            "an unprivileged /proc needs a procfs fully visible in this mount namespace, "
            "and none is mounted on /proc"
        )
    elif facts.proc.masked:
        shown = ", ".join(facts.proc.masked[:4]) + (", ..." if len(facts.proc.masked) > 4 else "")
        cause = (
            f"/proc has {len(facts.proc.masked)} masked path(s) ({shown}): a fresh /proc in a "
            "user namespace would reveal them, so the kernel refuses it"
        )
    else:
        cause = (
            "an unprivileged /proc needs the host's /proc fully visible (no file or "
            "directory mounted over parts of it)"
        )
    if subset_allowed is None:
        subset_allowed = probe("proc-subset", user=True).ok
    fix = "use --no-mount-proc"
    if subset_allowed:
        fix += " (a procfs with subset=pid, only the process directories, is allowed here)"
    elif facts.container and facts.proc.masked:
        fix += " or " + _container_flag(
            facts, "--security-opt systempaths=unconfined", "--security-opt unmask=ALL"
        )
    return Refusal(cause, fix)


def _dumpable() -> bool:
    from pidns.linux import syscalls  # noqa: PLC0415

    return bool(syscalls.prctl(syscalls.PR_GET_DUMPABLE))


# -- trying each namespace for real -------------------------------------------------------


class Probe(NamedTuple):
    """One namespace kind tried in a throw-away child: the step that failed, if any."""

    name: str  # user, pid, mount, proc, proc-subset
    ok: bool
    step: str  # the failing step ("" when ok)
    errno: int
    user: bool  # a user namespace was made in the same call

    def refusal(self, facts: Facts | None = None) -> Refusal | None:
        if self.ok:
            return None
        if self.name == "proc-subset" and self.step == "proc":
            return Refusal(f"a procfs with subset=pid is refused ({os.strerror(self.errno)})", "")
        return refusal(self.step, self.errno, user=self.user, facts=facts)


def probe(name: str, *, user: bool) -> Probe:
    """Make namespace kind ``name`` exactly as the launcher does (one clone3, then the
    init's steps) in a child that reports how far it got and exits. ``user``: make a user
    namespace in the same call and map the caller to root in it."""
    from pidns.core import flags as cf  # noqa: PLC0415
    from pidns.linux import mounts, syscalls  # noqa: PLC0415

    flags = {
        "user": cf.NEWUSER,
        "pid": cf.NEWPID,
        "mount": cf.NEWNS,
        "proc": cf.NEWPID | cf.NEWNS,
        "proc-subset": cf.NEWPID | cf.NEWNS,
    }[name]
    if user:
        flags |= cf.NEWUSER
    uid, gid = os.getuid(), os.getgid()
    read_end, write_end = os.pipe()
    try:
        pid, _ = syscalls.clone_bare(flags)
    except OSError as exc:
        os.close(read_end)
        os.close(write_end)
        return Probe(name, False, "clone", exc.errno or errno.EIO, user)
    if pid == 0:  # the throw-away child: pid 1 of its namespace when there is one
        step = "user_namespace"
        try:
            os.close(read_end)
            if flags & cf.NEWUSER:
                userns.write_id_maps(userns.MAP_ROOT, uid, gid)
            if flags & cf.NEWPID and os.getpid() != 1:
                raise OSError(errno.EINVAL, "not pid 1")
            if flags & cf.NEWNS:
                step = "mount"
                mounts.make_private_recursive()
            if name.startswith("proc"):
                step = "proc"
                mounts.mount_proc(subset_pid=name == "proc-subset")
            os.write(write_end, b"ok")
        except OSError as exc:
            os.write(write_end, f"{step} {exc.errno or errno.EIO}".encode())
        finally:
            os._exit(0)
    os.close(write_end)
    try:
        answer = os.read(read_end, 64).decode()
    finally:
        os.close(read_end)
        os.waitpid(pid, 0)
    if answer == "ok":
        return Probe(name, True, "", 0, user)
    step, _, number = answer.partition(" ")
    return Probe(name, False, step or "setup", int(number or errno.EIO), user)


# -- the whole examination (pidns doctor) -------------------------------------------------


class Check(NamedTuple):
    """One row of ``pidns doctor``: ``state`` is ok, refused or note."""

    name: str
    state: str
    detail: str
    cause: str = ""
    fix: str = ""

    def as_dict(self) -> dict[str, str]:
        return self._asdict()


OK, REFUSED, NOTE = "ok", "refused", "note"


class Examination(NamedTuple):
    checks: list[Check]
    full_isolation: bool  # pidns run works here with a pid namespace and a fresh /proc
    pid_namespace: bool  # a pid namespace can be had (with --no-mount-proc at least)
    summary: str


def _sysctl_checks(facts: Facts) -> list[Check]:
    checks = []
    for name, _path in SYSCTLS:
        value = facts.sysctls[name]
        if value is None:
            checks.append(Check(name, NOTE, "not present in this kernel"))
            continue
        state, cause = OK, ""
        if name.startswith("user.max_") and value == 0:
            state, cause = REFUSED, f"0 refuses every {name[9:-11]} namespace"
        elif name == "kernel.unprivileged_userns_clone" and value == 0:
            state = NOTE if facts.privileged else REFUSED
            cause = "0 refuses user namespaces to unprivileged callers"
        elif name == "kernel.apparmor_restrict_unprivileged_userns" and value == 1:
            state = NOTE if facts.privileged else REFUSED
            cause = "1 denies capabilities in an unprivileged user namespace"
        fix = f"sysctl -w {name}={15000 if name.startswith('user.') else 1 - value}"
        checks.append(Check(name, state, str(value), cause, fix if state == REFUSED else ""))
    return checks


def _subids() -> Check:
    import pwd  # noqa: PLC0415

    try:
        user = pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        user = str(os.getuid())
    found = []
    for path in ("/etc/subuid", "/etc/subgid"):
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                entries = [
                    line.strip()
                    for line in f
                    if line.split(":")[0] in (user, str(os.getuid())) and line.strip()
                ]
        except OSError:
            entries = []
        found.append(f"{path}: {', '.join(entries) or 'none for ' + user}")
    tools = []
    for tool in ("newuidmap", "newgidmap"):
        where = _which(tool)
        tools.append(f"{tool}: {where or 'not installed'}")
    return Check(
        "subuid/subgid",
        NOTE,
        "; ".join(found + tools) + " (pidns maps one id and needs none of them)",
    )


def _which(name: str) -> str | None:
    for directory in os.get_exec_path():
        candidate = os.path.join(directory, name)
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def examine() -> Examination:
    """Everything ``pidns doctor`` reports: each namespace tried for real, the facts."""
    facts = Facts()
    status = facts.status
    user = not facts.privileged  # what the launcher does by default
    checks = [Check("kernel", NOTE, os.uname().release)]
    mask = f"CapEff {status.cap_eff:016x}"
    checks.append(
        Check("capabilities", OK, f"{mask}, CAP_SYS_ADMIN: namespaces are made directly")
        if facts.privileged
        else Check(
            "capabilities",
            NOTE,
            f"{mask}, no CAP_SYS_ADMIN: pidns run makes a user namespace (you are root in it)",
        )
    )
    mode = SECCOMP_MODES.get(status.seccomp, str(status.seccomp))
    checks.append(
        Check(
            "seccomp",
            NOTE if status.seccomp else OK,
            f"{mode} ({status.seccomp_filters} filters), NoNewPrivs {int(status.no_new_privs)}",
        )
    )
    checks += _sysctl_checks(facts)
    results = {"user": probe("user", user=True)}
    for name in ("pid", "mount", "proc", "proc-subset"):
        results[name] = probe(name, user=user)
    titles = {
        "user": "user namespace",
        "pid": "pid namespace",
        "mount": "mount namespace",
        "proc": "fresh /proc",
        "proc-subset": "/proc subset=pid",
    }
    for name, result in results.items():
        how = " (in a user namespace)" if result.user and name != "user" else ""
        if result.ok:
            checks.append(Check(titles[name], OK, f"made{how}"))
            continue
        if name == "proc-subset":
            why = result.refusal(facts)
            checks.append(Check(titles[name], NOTE, why.cause if why else "refused"))
            continue
        why = (
            proc_refusal(result.user, facts, results["proc-subset"].ok)
            if result.step == "proc" and result.errno in (errno.EPERM, errno.EACCES)
            else result.refusal(facts)
        )
        assert why is not None
        detail = f"refused{how} at {result.step}: {errno.errorcode.get(result.errno, '?')}"
        checks.append(Check(titles[name], REFUSED, detail, why.cause, why.fix))
    proc = facts.proc
    hidepid = proc.option("hidepid")
    checks.append(
        Check(
            "/proc",
            OK if proc.mounted and not proc.masked else NOTE,
            ("a procfs" if proc.mounted else "no procfs is mounted")
            + (f", {len(proc.masked)} masked: {', '.join(proc.masked)}" if proc.masked else "")
            + (f", hidepid={hidepid}: other users' processes hidden" if hidepid else ""),
        )
    )
    checks += _feature_checks()
    checks.append(_subids())
    checks.append(_fallback_check())
    pid_ok = results["pid"].ok
    full = pid_ok and results["proc"].ok
    if full:
        summary = "pidns run works here with full isolation"
    elif pid_ok:
        summary = (
            "pidns run works here only with --no-mount-proc (a pid namespace, but no fresh "
            "/proc): " + str(next(c.cause for c in checks if c.name == titles["proc"]))
        )
    else:
        first = next(c for c in checks if c.state == REFUSED and c.name == titles["pid"])
        summary = (
            f"pidns run cannot make a pid namespace here: {first.cause}; "
            "pidns run --fallback subreaper runs commands without pid isolation"
        )
    return Examination(checks, full, pid_ok, summary)


def _feature_checks() -> list[Check]:
    """One row per kernel feature of the probe module (linux/features.py)."""
    from pidns.linux import features  # noqa: PLC0415

    checks = []
    for name, row in features.FEATURES.items():
        try:
            present = features.has(name)
        except OSError as exc:
            checks.append(Check(f"feature {name}", NOTE, f"cannot tell: {exc.strerror}"))
            continue
        if present:
            checks.append(Check(f"feature {name}", OK, f"{row.what} (Linux {row.since})"))
        else:
            instead = f"; pidns uses {row.fallback}" if row.fallback else ""
            detail = f"missing: {row.what} (Linux {row.since}){instead}"
            checks.append(Check(f"feature {name}", NOTE, detail))
    return checks


def _fallback_check() -> Check:
    """Whether ``--fallback subreaper`` has what it needs: a subreaper, pidfds."""
    from pidns.linux import syscalls  # noqa: PLC0415

    try:
        fd = syscalls.pidfd_open(os.getpid())
        os.close(fd)
    except OSError as exc:
        return Check("fallback subreaper", REFUSED, f"no pidfd: {exc.strerror}")
    from pidns.linux import subreaper  # noqa: PLC0415

    directory = subreaper.cgroup_dir()
    kill = (
        f"cgroup.kill in a child of {directory} (writable)"
        if directory is not None
        else "no writable cgroup v2: the tree is stopped and killed by signals alone"
    )
    return Check("fallback subreaper", OK, f"PR_SET_CHILD_SUBREAPER and pidfds; {kill}")
