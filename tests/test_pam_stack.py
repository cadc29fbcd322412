"""pam_pidns through real PAM stacks: pamtester (a C program; pam_python embeds the system's
python3) and ``pidns login-test`` (the seed's login flow: open_session, fork, setuid, exec,
waitpid, close_session).

Each test writes its own PAM service file under /etc/pam.d (a unique name, removed at
teardown). The module's log lines go to syslog, and there may be no syslog here (no
/dev/log, no journald): every PAM program runs in a private mount namespace whose /dev/log
is a socket this test reads, so what the module (or pam_python, for an import failure) logs
is asserted on, and shown when a test fails.
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import pidns.pam
from pidns.cli import login
from pidns.core import flags as cf
from pidns.linux import proc
from pidns.linux import syscalls as sc

MODULE = Path(pidns.pam.__file__).resolve().parent / "pam_pidns.py"
PAM_PYTHON = [
    Path(d) / "pam_python.so"
    for d in ("/lib/security", "/usr/lib/security", "/lib/x86_64-linux-gnu/security")
]
NOBODY = pwd.getpwuid(65534).pw_name
MS_MOVE = 8192
LOGIN_RECORDS = ("/var/log/wtmp", "/var/log/lastlog", "/var/log/btmp", "/var/run/utmp")
TIMEOUT = 30

pytestmark = [
    pytest.mark.real,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: writes /etc/pam.d, opens sessions"),
    pytest.mark.skipif(
        not any(p.exists() for p in PAM_PYTHON),
        reason="pam_python.so is missing: install the Debian package libpam-python (make deps)",
    ),
]

needs_pamtester = pytest.mark.skipif(
    shutil.which("pamtester") is None,
    reason="pamtester is missing: install the Debian package pamtester (make deps)",
)


@dataclass
class Syslog:
    """A datagram socket standing in for /dev/log in the PAM programs' mount namespace."""

    directory: Path
    sock: socket.socket
    lines: list[str] = field(default_factory=list)

    def drain(self) -> list[str]:
        while True:
            try:
                data = self.sock.recv(65536)
            except BlockingIOError:
                return self.lines
            self.lines.append(data.decode("utf-8", "replace"))

    def text(self) -> str:
        return "\n".join(self.drain()) or "(nothing was logged)"

    def enter(self, binds: Mapping[str, Path] | None = None) -> None:
        """preexec_fn: a private mount namespace whose /dev is the host's plus this log, and
        where each file of ``binds`` (target: source) is replaced by its source."""
        sc.unshare(cf.NEWNS)
        sc.mount(None, "/", None, sc.MS_REC | sc.MS_PRIVATE)
        dev = self.directory / "dev"
        sc.mount("tmpfs", str(dev), "tmpfs", 0, "mode=755")
        for name in os.listdir("/dev"):
            source, target = f"/dev/{name}", dev / name
            if name == "log":
                continue
            if name == "ptmx":  # a bound ptmx node finds no pts/ next to it: as containers do
                target.symlink_to("pts/ptmx")
            elif os.path.islink(source):
                target.symlink_to(os.readlink(source))
            elif os.path.isdir(source):
                target.mkdir()
                sc.mount(source, str(target), None, sc.MS_BIND | sc.MS_REC)
            else:
                target.touch()
                sc.mount(source, str(target), None, sc.MS_BIND)
        (dev / "log").touch()
        sc.mount(str(self.directory / "log"), str(dev / "log"), None, sc.MS_BIND)
        sc.mount(str(dev), "/dev", None, MS_MOVE)
        for path, replacement in (binds or {}).items():
            sc.mount(str(replacement), path, None, sc.MS_BIND)


@pytest.fixture
def syslog() -> Iterator[Syslog]:
    directory = Path(tempfile.mkdtemp(prefix="pidns-pam-log-"))
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        sock.bind(str(directory / "log"))
        os.chmod(directory / "log", 0o666)
        sock.setblocking(False)
        (directory / "dev").mkdir()
        yield Syslog(directory, sock)
    finally:
        sock.close()
        shutil.rmtree(directory)


@pytest.fixture
def pam_service() -> Iterator[Callable[..., str]]:
    """A factory: ``pam_service("mount_proc debug")`` writes /etc/pam.d/<unique> whose
    session stack is pam_unix then pam_pidns with those options; all are removed after."""
    written: list[Path] = []

    def make(options: str = "", module: Path = MODULE) -> str:
        name = f"pidns-test-{uuid.uuid4().hex[:12]}"
        path = Path("/etc/pam.d") / name
        path.write_text(
            "# written by pidns's tests/test_pam_stack.py, removed when the test ends\n"
            "session required pam_unix.so\n"
            f"session required pam_python.so {module} {options}\n"
        )
        written.append(path)
        return name

    try:
        yield make
    finally:
        for path in written:
            path.unlink(missing_ok=True)


@pytest.fixture
def scratch() -> Iterator[Path]:
    """A directory the session's user (nobody) can write to."""
    directory = Path(tempfile.mkdtemp(prefix="pidns-pam-session-"))
    os.chmod(directory, 0o777)
    try:
        yield directory
    finally:
        shutil.rmtree(directory)


def run(
    argv: list[str],
    syslog: Syslog | None = None,
    binds: Mapping[str, Path] | None = None,
    stdin: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a PAM program to completion, in the private /dev/log namespace if ``syslog``."""
    return subprocess.run(
        argv,
        check=False,
        input=stdin,
        preexec_fn=None if syslog is None else lambda: syslog.enter(binds),  # see start()
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )


@dataclass
class Background:
    """A PAM program running in the background, its output going to a file (a pipe could
    be held open by a leftover process and hang the test)."""

    process: subprocess.Popen[bytes]
    output: Path

    def text(self) -> str:
        return self.output.read_text(errors="replace")

    def wait(self) -> int:
        return self.process.wait(timeout=TIMEOUT)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=TIMEOUT)


def start(argv: list[str], syslog: Syslog) -> Background:
    """Start a PAM program in the background. The mount namespace is entered between fork
    and exec with preexec_fn; pytest runs no threads, which is what makes that safe."""
    output = syslog.directory / f"output-{uuid.uuid4().hex[:8]}"
    with output.open("wb") as sink:
        process = subprocess.Popen(
            argv,
            preexec_fn=syslog.enter,  # noqa: PLW1509
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    return Background(process, output)


def login_argv(service: str, command: str, *extra: str, user: str = NOBODY) -> list[str]:
    argv = [sys.executable, "-m", "pidns", "login-test", "--service", service]
    return [*argv, "--shell", "/bin/sh", "-c", command, *extra, user]


def login_test(
    syslog: Syslog, service: str, command: str, *extra: str
) -> subprocess.CompletedProcess[str]:
    return run(login_argv(service, command, *extra), syslog)


def pamtester(syslog: Syslog, service: str, *operations: str) -> subprocess.CompletedProcess[str]:
    return run(["pamtester", service, NOBODY, *operations], syslog)


def report(done: subprocess.CompletedProcess[str], syslog: Syslog) -> str:
    streams = f"stdout: {done.stdout}\nstderr: {done.stderr}"
    return f"exit {done.returncode}\n{streams}\nsyslog:\n{syslog.text()}"


def test_the_login_shell_is_pid_1_and_its_parent_shows_as_0(
    syslog: Syslog, pam_service: Callable[..., str]
) -> None:
    service = pam_service("debug")
    done = login_test(syslog, service, 'echo "$$ $PPID"; readlink /proc/self/ns/pid', "-v")
    assert done.returncode == 0, report(done, syslog)
    pid_ppid, namespace = done.stdout.split("\n")[:2]
    assert pid_ppid == "1 0"
    assert namespace != os.readlink("/proc/self/ns/pid")
    # the module named the namespace before it had any process; it is the shell's
    assert f"nobody: new pid namespace {namespace} for the next child" in syslog.text()
    for step in ("pam_open_session: ok", "waitpid: exited 0", "pam_close_session: ok"):
        assert step in done.stderr


def test_with_mount_proc_ps_shows_only_the_session(
    syslog: Syslog, pam_service: Callable[..., str]
) -> None:
    service = pam_service("mount_proc")
    done = login_test(
        syslog,
        service,
        # until sleep has replaced the forked sh (builtins only: no pid is spent on it)
        'sleep 30 & until read c </proc/$!/comm && [ "$c" = sleep ]; do :; done; '
        "ps -e -o pid=,ppid=,comm=; kill $!",
    )
    assert done.returncode == 0, report(done, syslog)
    rows = [line.split() for line in done.stdout.strip().split("\n")]
    assert rows == [["1", "0", "sh"], ["2", "1", "sleep"], ["3", "1", "ps"]]
    assert len(proc.pids()) > 3  # the host's /proc is untouched
    assert "with its own /proc" in syslog.text()


def session_processes(namespace: str) -> dict[int, proc.Status]:
    """Host pids (and their status) of every process in the session's pid namespace.

    Refuses the test's own namespace: if the module made no namespace, the "session" would
    be the whole host, and the cleanup below must never see host processes."""
    if namespace == os.readlink("/proc/self/ns/pid"):
        pytest.fail("the session shell is in the test's own pid namespace: none was made")
    inode = int(namespace[namespace.index("[") + 1 : -1])
    found: dict[int, proc.Status] = {}
    for pid in proc.pids():
        try:
            if proc.ns_inode(pid) == inode:
                found[pid] = proc.status(pid)
        except OSError:
            continue
    return found


def alive(members: dict[int, proc.Status]) -> list[int]:
    """The session processes still running: same pid, same NSpid chain, not a zombie."""
    running = []
    for pid, seen in members.items():
        try:
            now = proc.status(pid)
        except OSError:
            continue
        if now.nspid == seen.nspid and now.state != "Z":
            running.append(pid)
    return running


def kill_leftovers(members: dict[int, proc.Status]) -> None:
    """Cleanup after a failed test: SIGKILL what is left of the session, and nothing else
    (only the session user's processes, outside the test's own pid namespace)."""
    own = proc.ns_inode("self")
    for pid in alive(members):
        try:
            if proc.ns_inode(pid) != own and proc.status(pid).uid == 65534:
                os.kill(pid, signal.SIGKILL)
        except OSError:
            continue


def wait_for(path: Path, background: Background) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not path.exists():
        if background.process.poll() is not None or time.monotonic() > deadline:
            background.stop()
            code = background.process.returncode
            pytest.fail(f"{path.name} never appeared; login-test: {code} {background.text()}")
        time.sleep(0.02)


DAEMON = (
    "python3 -c 'import os, time; os.fork() and os._exit(0); os.setsid(); "
    'os.fork() and os._exit(0); open("{d}/daemon", "w").write(str(os.getpid())); '
    "time.sleep(300)' </dev/null >/dev/null 2>&1\n"
    "while [ ! -s {d}/daemon ]; do sleep 0.02; done\n"
    "readlink /proc/self/ns/pid > {d}/ns.tmp && mv {d}/ns.tmp {d}/ns\n"
    "while [ ! -e {d}/go ]; do sleep 0.02; done\n"
)


@pytest.mark.parametrize("options", ["", "mount_proc"])
def test_a_daemon_dies_when_the_session_shell_exits(
    syslog: Syslog, pam_service: Callable[..., str], scratch: Path, options: str
) -> None:
    service = pam_service(options)
    session = start(login_argv(service, DAEMON.format(d=scratch)), syslog)
    members: dict[int, proc.Status] = {}
    try:
        wait_for(scratch / "ns", session)
        members = session_processes((scratch / "ns").read_text().strip())
        daemon_ns_pid = int((scratch / "daemon").read_text())
        [shell] = [pid for pid, st in members.items() if st.nspid[-1] == 1]
        [daemon] = [pid for pid, st in members.items() if st.nspid[-1] == daemon_ns_pid]
        # a daemon: a session of its own (led by the middle process, gone after the second
        # fork), and reparented to the session's pid 1
        assert proc.stat(daemon).session not in (daemon, proc.stat(shell).session)
        assert members[daemon].ppid == shell
        assert members[daemon].uid == 65534
        (scratch / "go").touch()
        assert session.wait() == 0, f"{session.text()}\n{syslog.text()}"
        assert alive(members) == [], "session processes outlived the session's shell"
    finally:
        session.stop()
        kill_leftovers(members)


def test_a_user_not_selected_gets_no_namespace(
    syslog: Syslog, pam_service: Callable[..., str]
) -> None:
    service = pam_service("users=root mount_proc debug")
    done = login_test(syslog, service, 'echo "$$"; readlink /proc/self/ns/pid')
    assert done.returncode == 0, report(done, syslog)
    pid, namespace = done.stdout.split("\n")[:2]
    assert pid != "1"
    assert namespace == os.readlink("/proc/self/ns/pid")
    text = syslog.text()
    assert "nobody is neither in users nor in a group of groups: no pid namespace" in text
    assert "new pid namespace" not in text


def test_a_group_selects_its_members(syslog: Syslog, pam_service: Callable[..., str]) -> None:
    group = grp.getgrgid(pwd.getpwnam(NOBODY).pw_gid).gr_name
    done = login_test(syslog, pam_service(f"groups={group}"), 'echo "$$"')
    assert done.returncode == 0, report(done, syslog)
    assert done.stdout == "1\n"
    excluded = login_test(syslog, pam_service(f"exclude_groups={group}"), 'echo "$$"')
    assert excluded.returncode == 0, report(excluded, syslog)
    assert excluded.stdout != "1\n"


def test_a_broken_option_refuses_the_session_with_a_log_line(
    syslog: Syslog, pam_service: Callable[..., str], scratch: Path
) -> None:
    service = pam_service("users=nobody mount-proc")
    done = login_test(syslog, service, f"touch {scratch}/ran")
    assert done.returncode == 125, report(done, syslog)
    assert "pam_open_session: Cannot make/remove an entry for the specified session" in done.stderr
    assert "(PAM_SESSION_ERR)" in done.stderr
    assert not (scratch / "ran").exists()
    assert f"pam_pidns({service}:session): unknown option 'mount-proc'" in syslog.text()


@needs_pamtester
def test_pamtester_a_broken_option_is_a_session_error(
    syslog: Syslog, pam_service: Callable[..., str]
) -> None:
    service = pam_service("users=")
    done = pamtester(syslog, service, "open_session")
    assert done.returncode != 0, report(done, syslog)
    assert "Cannot make/remove an entry for the specified session" in done.stderr
    assert (
        f"pam_pidns({service}:session): option users= needs a comma-separated list of names; "
        "session refused" in syslog.text()
    )


@needs_pamtester
def test_pamtester_opens_and_closes_twice_in_one_process(
    syslog: Syslog, pam_service: Callable[..., str]
) -> None:
    """close_session returns the login process to its namespaces, so a second session in the
    same process gets a fresh namespace (a second unshare would otherwise be EINVAL)."""
    service = pam_service("mount_proc debug")
    ops = ("open_session", "close_session", "open_session", "close_session")
    done = pamtester(syslog, service, *ops)
    assert done.returncode == 0, report(done, syslog)
    assert done.stdout.count("successfully opened a session") == 2
    lines = syslog.drain()
    opened = [line for line in lines if "new pid namespace" in line]
    assert len(opened) == 2, "\n".join(lines)
    assert sum("back in its own namespaces" in line for line in lines) == 2


@needs_pamtester
def test_pamtester_a_user_not_selected_is_let_through(
    syslog: Syslog, pam_service: Callable[..., str]
) -> None:
    service = pam_service("exclude_users=nobody debug")
    done = pamtester(syslog, service, "open_session", "close_session")
    assert done.returncode == 0, report(done, syslog)
    text = syslog.text()
    assert "nobody is in exclude_users: no pid namespace" in text
    assert "new pid namespace" not in text


@needs_pamtester
@pytest.mark.parametrize(
    ("package", "why"),
    [
        (None, "ImportError: no pidns package there"),
        ("raise RuntimeError('half-installed')\n", "RuntimeError: half-installed"),
    ],
)
def test_an_import_failure_refuses_the_session_and_says_why(
    syslog: Syslog,
    pam_service: Callable[..., str],
    scratch: Path,
    package: str | None,
    why: str,
) -> None:
    """A copy of the module file whose package is missing or broken cannot import pidns:
    the session is refused with a log line naming the cause, not with the bare
    PAM_SERVICE_ERR that pam_python makes of an exception."""
    (scratch / "pidns" / "pam").mkdir(parents=True)
    if package is not None:
        (scratch / "pidns" / "__init__.py").write_text(package)
    stray = scratch / "pidns" / "pam" / "pam_pidns.py"
    shutil.copy(MODULE, stray)
    service = pam_service("debug", module=stray)
    done = pamtester(syslog, service, "open_session")
    assert done.returncode != 0, report(done, syslog)
    assert "Cannot make/remove an entry for the specified session" in done.stderr
    expected = f"pam_pidns({service}:session): cannot import pidns from {scratch}: {why}; "
    assert expected + "session refused" in syslog.text()


def test_login_test_passes_on_the_shell_status(
    syslog: Syslog, pam_service: Callable[..., str]
) -> None:
    service = pam_service()
    assert login_test(syslog, service, "exit 7").returncode == 7
    # The shell is its namespace's init: its own SIGKILL, sent from inside, is ignored
    # (kernel/signal.c:sig_task_ignored, SIGNAL_UNKILLABLE), so it carries on.
    survived = login_test(syslog, service, "kill -KILL $$; echo survived")
    assert (survived.returncode, survived.stdout) == (0, "survived\n"), report(survived, syslog)
    argv = [sys.executable, "-m", "pidns", "login-test", "--service", service]
    missing = run([*argv, "--shell", "/nonexistent/sh", NOBODY], syslog)
    assert missing.returncode == 127, report(missing, syslog)
    assert "/nonexistent/sh: No such file or directory" in missing.stderr


def test_login_test_maps_exec_errors_as_pidns_run_does(
    syslog: Syslog, pam_service: Callable[..., str]
) -> None:
    """Every errno of a failed lookup is "not found" (pidns.core.exits). A test of its own:
    the syslog socket holds only about ten lines (net.unix.max_dgram_qlen) undrained."""
    argv = [sys.executable, "-m", "pidns", "login-test", "--service", pam_service()]
    not_a_dir = run([*argv, "--shell", "/etc/passwd/sh", NOBODY], syslog)
    assert not_a_dir.returncode == 127, report(not_a_dir, syslog)
    assert "/etc/passwd/sh: Not a directory" in not_a_dir.stderr
    too_long = run([*argv, "--shell", "/" + "x" * 5000, NOBODY], syslog)
    assert too_long.returncode == 127, report(too_long, syslog)
    not_executable = run([*argv, "--shell", "/etc/passwd", NOBODY], syslog)
    assert not_executable.returncode == 126, report(not_executable, syslog)


def test_sigint_to_login_test_ends_the_whole_session(
    syslog: Syslog, pam_service: Callable[..., str], scratch: Path
) -> None:
    service = pam_service()
    command = (
        f"sleep 300 & readlink /proc/self/ns/pid > {scratch}/ns.tmp && mv {scratch}/ns.tmp "
        f"{scratch}/ns; wait"
    )
    session = start(login_argv(service, command), syslog)
    members: dict[int, proc.Status] = {}
    try:
        wait_for(scratch / "ns", session)
        members = session_processes((scratch / "ns").read_text().strip())
        # mv may still be a zombie that sh has not reaped yet, under load
        assert len([s for s in members.values() if s.state != "Z"]) == 2
        session.process.send_signal(signal.SIGINT)
        assert session.wait() == 128 + signal.SIGINT, session.text()
        assert alive(members) == []
    finally:
        session.stop()
        kill_leftovers(members)


def test_login_test_usage_errors() -> None:
    argv = [sys.executable, "-m", "pidns", "login-test"]
    unknown_user = run([*argv, "no-such-user-pidns"])
    assert unknown_user.returncode == 2
    assert unknown_user.stderr == "pidns login-test: no such user: no-such-user-pidns\n"
    no_service = run([*argv, "--service", "pidns-no-such-service", NOBODY])
    assert no_service.returncode == 2
    assert "no PAM service 'pidns-no-such-service'" in no_service.stderr
    bad_flag = run([*argv, "--bogus"])
    assert bad_flag.returncode == 2
    assert (
        bad_flag.stderr
        == "pidns login-test: unknown option '--bogus' (see pidns login-test --help)\n"
    )


def test_the_example_service_file_works(syslog: Syslog, scratch: Path) -> None:
    example = Path(__file__).resolve().parent.parent / "examples" / "pam_pidns-demo"
    service = f"pidns-test-{uuid.uuid4().hex[:12]}"
    path = Path("/etc/pam.d") / service
    path.write_text(example.read_text().replace("MODULE", str(MODULE)))
    try:
        done = login_test(syslog, service, 'echo "$$ $PPID"; ps -e -o pid=')
    finally:
        path.unlink()
    assert done.returncode == 0, report(done, syslog)
    assert done.stdout.split() == ["1", "0", "1", "2"]


def with_module(service_file: str, options: str, scratch: Path) -> Path:
    """A copy of a system PAM service file with pam_pidns appended as the last session line,
    as docs/pam.md says; bound over the original only inside the test's mount namespace."""
    copy = scratch / Path(service_file).name
    text = Path(service_file).read_text()
    copy.write_text(f"{text}\nsession required pam_python.so {MODULE} {options}\n")
    return copy


@pytest.mark.skipif(shutil.which("su") is None, reason="su is not installed")
def test_enabled_for_su_the_shell_is_pid_1_and_sees_only_its_session(
    syslog: Syslog, scratch: Path
) -> None:
    su_file = with_module("/etc/pam.d/su", "mount_proc", scratch)
    command = 'echo "$$ $PPID"; ps -e -o pid=,ppid=,comm='
    done = run(["su", "-s", "/bin/sh", "-c", command, NOBODY], syslog, {"/etc/pam.d/su": su_file})
    assert done.returncode == 0, report(done, syslog)
    lines = done.stdout.strip().split("\n")
    assert lines[0] == "1 0"
    assert [line.split() for line in lines[1:]] == [["1", "0", "sh"], ["2", "1", "ps"]]


@pytest.mark.skipif(
    shutil.which("login") is None or shutil.which("script") is None,
    reason="login(1) or script(1) is not installed",
)
def test_enabled_for_login_the_login_shell_is_pid_1(syslog: Syslog, scratch: Path) -> None:
    """login(1) itself, on a pseudo-terminal from script(1), logging root in with -f."""
    binds = {"/etc/pam.d/login": with_module("/etc/pam.d/login", "mount_proc", scratch)}
    # leave no record of this login in the host's login accounting
    binds |= {log: Path("/dev/null") for log in LOGIN_RECORDS if Path(log).is_file()}
    done = run(
        ["script", "-qec", "login -f root", "/dev/null"],
        syslog,
        binds,
        stdin="echo PIDS $$ $PPID $(ps -e -o pid= | wc -l); exit\n",
    )
    assert done.returncode == 0, report(done, syslog)
    found = [line.split() for line in done.stdout.splitlines() if line.startswith("PIDS ")]
    # the login shell is pid 1 with parent 0; its /proc lists only the shell, the
    # command substitution's subshell, ps and wc
    assert found == [["PIDS", "1", "0", "4"]], report(done, syslog)


def test_a_forking_module_after_pam_pidns_takes_pid_1_and_breaks_the_login(
    syslog: Syslog, scratch: Path
) -> None:
    """Why docs/pam.md says "the last session line": pam_exec forks after the unshare, its
    child becomes the namespace's init and exits, and the login's own fork then fails."""
    service = f"pidns-test-{uuid.uuid4().hex[:12]}"
    path = Path("/etc/pam.d") / service
    path.write_text(
        f"session required pam_python.so {MODULE}\nsession optional pam_exec.so /bin/true\n"
    )
    try:
        done = login_test(syslog, service, f"touch {scratch}/ran")
    finally:
        path.unlink()
    assert done.returncode == 125, report(done, syslog)
    assert "fork: Cannot allocate memory" in done.stderr
    assert not (scratch / "ran").exists()


def test_login_test_refuses_to_run_unprivileged(pam_service: Callable[..., str]) -> None:
    service = pam_service()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        status = 99
        try:
            sys.stderr = os.fdopen(write_end, "w")  # pytest's capture is not the child's
            os.setgid(65534)
            os.setgroups([])
            os.setuid(65534)
            status = login.main("login-test", ["--service", service, NOBODY])
            sys.stderr.flush()
        finally:
            os._exit(status)
    os.close(write_end)
    with os.fdopen(read_end) as stderr:
        message = stderr.read()
    _, wait_status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(wait_status) == 125
    assert message == (
        "pidns login-test: must run as root (it opens PAM sessions and changes user)\n"
    )
