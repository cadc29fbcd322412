"""The Python API: ``pidns.run``, ``pidns.Popen``, ``check_output``, ``call``, shaped like
subprocess's.

Each call makes a new pid namespace (and, by default, a mount namespace with a fresh
/proc; a user namespace when the caller lacks CAP_SYS_ADMIN) whose pid 1 is a pidns init,
and runs the command as pid 2. The init is made by this process's namespace server
(``pidns.linux.server``, started on first use), never by forking the caller: the cost of a
call does not grow with the caller's memory, and threads are safe. The caller holds a
pidfd of the init and learns its end on the status channel; it is reaped (by the server)
only once every process of the namespace is gone.

What differs from subprocess, on purpose:
- ``pid`` is the command's pid as the caller sees it; ``init_pid`` is pid 1's.
- ``kill()`` SIGKILLs pid 1, and with it every process of the namespace (the kernel's
  zap_pid_ns_processes); ``send_signal``/``terminate`` reach the command through the init.
- Leaving a ``with`` block, or dropping the last reference, kills the namespace if it still
  runs: no process of it outlives its Popen. If the calling process dies, the server and
  the init notice through a pidfd and the namespace dies too.
- File descriptors: the command gets 0, 1, 2 and ``pass_fds``, nothing else
  (``close_fds=False`` is refused). No ``preexec_fn``: the command is started with
  posix_spawn by the init, in another process.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import os
import select
import signal
import subprocess
import threading
import time
import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import IO, Any

from pidns.linux import launcher, served
from pidns.linux.launcher import SetupError

PIPE = subprocess.PIPE
STDOUT = subprocess.STDOUT
DEVNULL = subprocess.DEVNULL
TimeoutExpired = subprocess.TimeoutExpired
CalledProcessError = subprocess.CalledProcessError

StrOrBytesPath = str | bytes | os.PathLike[str] | os.PathLike[bytes]
Args = StrOrBytesPath | Sequence[StrOrBytesPath]
File = None | int | IO[Any]


class FallbackWarning(RuntimeWarning):
    """The command runs under a child subreaper, without a pid namespace (``fallback``)."""


class CompletedProcess(subprocess.CompletedProcess[Any]):
    """subprocess.CompletedProcess, plus where the command ran.

    ``pid``: the command's host pid; ``init_pid``: pid 1's host pid; ``report``: the same
    document as ``pidns run --json-report`` (layout in docs/run.md).
    """

    def __init__(
        self,
        args: Any,
        returncode: int,
        stdout: Any = None,
        stderr: Any = None,
        *,
        namespace: served.Served | None = None,
    ) -> None:
        super().__init__(args, returncode, stdout, stderr)
        self._namespace = namespace
        self.pid = None if namespace is None else namespace.pid
        self.init_pid = None if namespace is None else namespace.init_pid

    @property
    def report(self) -> dict[str, Any]:
        return {} if self._namespace is None else self._namespace.report()


def _command(args: Args, shell: bool) -> tuple[list[str], Any]:
    if isinstance(args, (str, bytes, os.PathLike)):
        if shell:
            return ["/bin/sh", "-c", os.fsdecode(args)], args
        return [os.fsdecode(args)], args
    argv = [os.fsdecode(a) for a in args]
    if shell:
        argv = ["/bin/sh", "-c", *argv]
    return argv, args


def _ids(user: str | int | None, group: str | int | None) -> tuple[int | None, int | None]:
    """subprocess's ``user`` and ``group`` as ids (names looked up as subprocess does)."""
    uid = gid = None
    if user is not None:
        if isinstance(user, int):
            uid = user
        else:
            import pwd  # noqa: PLC0415 (only with user=)

            uid = pwd.getpwnam(user).pw_uid
    if group is not None:
        if isinstance(group, int):
            gid = group
        else:
            import grp  # noqa: PLC0415 (only with group=)

            gid = grp.getgrnam(group).gr_gid
    return uid, gid


def _refuse(
    preexec_fn: Any,
    close_fds: bool,
    startupinfo: Any,
    creationflags: int,
    extra_groups: object,
) -> None:
    """subprocess's arguments that a command started by the init, in another process,
    cannot honour: a clear ValueError rather than silence."""
    if preexec_fn is not None:
        raise ValueError("preexec_fn cannot run: the command is started by the init, not a fork")
    if not close_fds:
        raise ValueError("close_fds=False: only 0, 1, 2 and pass_fds reach the command")
    if startupinfo is not None or creationflags:
        raise ValueError("startupinfo and creationflags are only supported on Windows")
    if extra_groups is not None:
        raise ValueError(
            "extra_groups is not supported: with user or group, the command's supplementary "
            "groups are dropped"
        )


def _signal_number(name: str, value: int, zero: bool = False) -> int:
    """A signal number (a signal.Signals, or a real-time one), or ValueError naming the
    argument; ``zero``: 0 (none) is one of the choices."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name}: a signal number, not {value!r}")
    if not (zero and value == 0) and not 1 <= value <= signal.SIGRTMAX:
        raise ValueError(f"{name}: no signal {value!r}")
    if value == signal.SIGKILL and name == "rewrite_signals":
        raise ValueError("rewrite_signals: SIGKILL cannot be caught to be rewritten")
    return int(value)


def _exit_statuses(values: Iterable[int]) -> tuple[int, ...]:
    statuses = tuple(values)
    for value in statuses:
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 255:
            raise ValueError(f"remap_exit: an exit status is 0 to 255, not {value!r}")
    return statuses


class Popen:
    """Run ``args`` in a new pid namespace; subprocess.Popen's interface where it applies.

    Namespace options: ``mount_proc`` (new mount namespace and fresh /proc, default True),
    ``as_pid_1`` (the command is pid 1, no init), ``map_user`` ("root" or "current": a user
    namespace; default "root" when the caller lacks CAP_SYS_ADMIN, else none),
    ``wait_all`` and ``grace`` (keep the namespace until it is empty after the command
    exits; with a grace period, TERM everyone left, then KILL), ``forward_to_group``,
    ``fallback`` ("fail", or "subreaper": where no pid namespace can be made, run the
    command under a child subreaper, with a FallbackWarning; None: $PIDNS_FALLBACK or
    "fail"). The options of ``pidns run`` of the same names: ``kill_signal`` (what the
    processes left get when the command exits, and on ``run``'s timeout; SIGKILL unless
    given; a catchable one is followed by SIGKILL after ``grace``, default 10 s),
    ``parent_death_signal`` (what every process of the namespace gets if the calling
    process dies; SIGKILL unless given, a catchable one followed by SIGKILL after the
    grace), ``rewrite_signals`` ({FROM: TO}: a signal sent to the command is forwarded as
    TO, 0 drops it; dumb-init's -r), ``remap_exit`` (exit statuses that count as 0;
    tini's -e).

    subprocess's own arguments keep their meaning: ``executable``, ``cwd``, ``env``,
    ``start_new_session``, ``process_group`` (0 only: a group of pids the namespace
    cannot see is meaningless), ``umask``, ``restore_signals``, ``pass_fds``, ``pipesize``;
    what an init in another process cannot do is a ValueError (``preexec_fn``,
    ``close_fds=False``, ``extra_groups``); ``user`` and ``group`` are taken by the init,
    which then forks and changes ids before exec. A bad ``cwd`` raises FileNotFoundError or
    NotADirectoryError, NUL bytes ValueError, before anything runs.

    Raises FileNotFoundError / PermissionError when the command cannot be executed, as
    subprocess does, and ``SetupError`` (an OSError) when the namespace cannot be made.
    Safe to use from several threads (waiting and closing are locked, as subprocess's).
    """

    def __init__(
        self,
        args: Args,
        bufsize: int = -1,
        executable: StrOrBytesPath | None = None,
        stdin: File = None,
        stdout: File = None,
        stderr: File = None,
        preexec_fn: Any = None,
        close_fds: bool = True,
        shell: bool = False,
        cwd: StrOrBytesPath | None = None,
        env: Mapping[Any, Any] | None = None,
        universal_newlines: bool | None = None,
        startupinfo: Any = None,
        creationflags: int = 0,
        restore_signals: bool = True,
        start_new_session: bool = False,
        pass_fds: Iterable[int] = (),
        *,
        user: str | int | None = None,
        group: str | int | None = None,
        extra_groups: Iterable[str | int] | None = None,
        encoding: str | None = None,
        errors: str | None = None,
        text: bool | None = None,
        umask: int = -1,
        pipesize: int = -1,
        process_group: int | None = None,
        mount_proc: bool = True,
        as_pid_1: bool = False,
        map_user: str | None = None,
        wait_all: bool = False,
        grace: float | None = None,
        forward_to_group: bool = False,
        fallback: str | None = None,
        kill_signal: int = 0,
        parent_death_signal: int = signal.SIGKILL,
        rewrite_signals: Mapping[int, int] | None = None,
        remap_exit: Iterable[int] = (),
        _timeout: float | None = None,  # run()'s timeout, kept by the init (kill_signal)
    ) -> None:
        self.returncode: int | None = None
        self.stdin: IO[Any] | None = None
        self.stdout: IO[Any] | None = None
        self.stderr: IO[Any] | None = None
        self._namespace: served.Served | None = None
        self._comm: _Communication | None = None
        self._lock = threading.Lock()  # one communicate at a time, as subprocess
        _refuse(preexec_fn, close_fds, startupinfo, creationflags, extra_groups)
        if process_group not in (None, 0):
            raise ValueError(
                "process_group: only 0 (a new group) is possible; the command's pid namespace "
                "cannot see the caller's process groups"
            )
        argv, self.args = _command(args, shell)
        options = launcher.Options(
            mount_proc=mount_proc,
            as_pid_1=as_pid_1,
            map_user=map_user,
            wait_all=wait_all,
            grace=grace,
            forward_to_group=forward_to_group,
            fallback=fallback,
            ids=_ids(user, group),
            kill_signal=_signal_number("kill_signal", kill_signal, zero=True),
            launcher_death_signal=_signal_number("parent_death_signal", parent_death_signal),
            rewrite={
                _signal_number("rewrite_signals", source): _signal_number(
                    "rewrite_signals", target, zero=True
                )
                for source, target in (rewrite_signals or {}).items()
            },
            remap_exit=_exit_statuses(remap_exit),
            timeout=_timeout,
        )
        self.text_mode = bool(text or universal_newlines or encoding or errors)
        self.encoding = encoding
        self.errors = errors
        plumbing = _Plumbing()
        try:
            stdio = plumbing.child_ends(stdin, stdout, stderr, pipesize)
            self._namespace = served.start(
                argv,
                options,
                env=None
                if env is None
                else {os.fsdecode(k): os.fsdecode(v) for k, v in env.items()},
                cwd=None if cwd is None else os.fsdecode(cwd),
                executable=None if executable is None else os.fsdecode(executable),
                stdio=stdio,
                pass_fds=tuple(pass_fds),
                # in the caller's process group, as with subprocess, unless asked
                new_group=process_group == 0 or forward_to_group,
                new_session=start_new_session,
                restore_signals=restore_signals,
                umask=umask,
                notice=_warn_fallback,
            )
        except BaseException:
            plumbing.close_all()
            raise
        plumbing.close_child_ends()
        self.stdin, self.stdout, self.stderr = (
            self._wrap(fd, mode, bufsize)
            for fd, mode in zip(plumbing.parent_ends, ("wb", "rb", "rb"), strict=True)
        )

    def _wrap(self, fd: int, mode: str, bufsize: int) -> IO[Any] | None:
        if fd < 0:
            return None
        raw = open(fd, mode, bufsize)  # noqa: SIM115 (the Popen owns it)
        if not self.text_mode:
            return raw
        return io.TextIOWrapper(
            raw,
            encoding=self.encoding,
            errors=self.errors,
            write_through=mode == "wb",
            line_buffering=bufsize == 1,
        )

    # -- identity ----------------------------------------------------------------------

    @property
    def pid(self) -> int:
        """The command's pid in the caller's pid namespace."""
        assert self._namespace is not None
        return self._namespace.pid

    @property
    def init_pid(self) -> int:
        """Pid 1's pid in the caller's pid namespace (the command's own with as_pid_1)."""
        assert self._namespace is not None
        return self._namespace.init_pid

    def report(self) -> dict[str, Any]:
        """The run as ``pidns run --json-report`` writes it (complete once it has ended)."""
        assert self._namespace is not None
        return self._namespace.report()

    # -- waiting -----------------------------------------------------------------------

    def poll(self) -> int | None:
        if self.returncode is None and self._namespace is not None:
            returncode = self._namespace.poll()
            if returncode is not None:
                self.returncode = returncode
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            assert self._namespace is not None
            returncode = self._namespace.wait(timeout)
            if returncode is None:
                raise TimeoutExpired(self.args, timeout or 0.0)
            self.returncode = returncode
        return self.returncode

    def communicate(self, input: Any = None, timeout: float | None = None) -> tuple[Any, Any]:
        """Send ``input``, read stdout and stderr to EOF, wait; like subprocess's."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            if self._comm is None:
                self._comm = _Communication(self, input)
            elif input:
                raise ValueError("Cannot send input after starting communication")
            try:
                self._comm.run(deadline)
            except TimeoutExpired as exc:
                exc.timeout = timeout or 0.0
                exc.cmd = self.args
                raise
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            self.wait(left)
        except TimeoutExpired as exc:
            exc.timeout = timeout or 0.0
            exc.output, exc.stderr = self._comm.raw()
            raise
        return self._comm.results()

    # -- signals -----------------------------------------------------------------------

    def send_signal(self, sig: int) -> None:
        """``sig`` to the command (through the init), unless it has ended."""
        if self._namespace is not None and self.poll() is None:
            self._namespace.send_signal(sig)

    def terminate(self) -> None:
        self.send_signal(int(signal.SIGTERM))

    def kill(self) -> None:
        """SIGKILL pid 1: every process of the namespace dies with it."""
        if self._namespace is not None and self.poll() is None:
            self._namespace.kill()

    # -- cleanup -----------------------------------------------------------------------

    def _close_files(self) -> None:
        for stream in (self.stdout, self.stderr):
            if stream is not None:
                stream.close()
        if self.stdin is not None:
            _close_quietly(self.stdin)

    def _end(self) -> None:
        """Kill the namespace if it still runs, and wait until it is empty."""
        if self._namespace is None:
            return
        if self.poll() is None:
            self._namespace.kill()
            self.returncode = self._namespace.wait()
        self._namespace.close()

    def __enter__(self) -> Popen:
        return self

    def __exit__(self, *exc_info: object) -> None:
        try:
            self._close_files()
        finally:
            self._end()

    def __del__(self) -> None:
        namespace = getattr(self, "_namespace", None)
        if namespace is None or namespace.wait_status is not None:
            return
        if self.poll() is None:
            warnings.warn(
                f"pidns.Popen {self.args!r} was still running; its namespace is killed",
                ResourceWarning,
                stacklevel=2,
            )
        self._end()

    def __repr__(self) -> str:
        state = "running" if self.returncode is None else f"returncode: {self.returncode}"
        return f"<pidns.Popen: {state} args: {self.args!r}>"


class _Plumbing:
    """The pipes and fds between the caller and the command's 0, 1, 2 (-1: the caller's
    own, as subprocess's None)."""

    def __init__(self) -> None:
        self.child: list[int] = [-1, -1, -1]
        self.parent_ends: list[int] = [-1, -1, -1]
        self.owned: list[int] = []  # fds made here for the child, closed once it runs

    def child_ends(
        self, stdin: File, stdout: File, stderr: File, pipesize: int = -1
    ) -> tuple[int, int, int]:
        for target, spec in enumerate((stdin, stdout, stderr)):
            if spec is None:
                continue
            if spec == PIPE:
                read_end, write_end = os.pipe()
                if pipesize > 0:  # as subprocess: fcntl(F_SETPIPE_SZ) on each pipe made
                    fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, pipesize)
                mine, theirs = (write_end, read_end) if target == 0 else (read_end, write_end)
                self.parent_ends[target] = mine
                self.child[target] = theirs
                self.owned.append(theirs)
            elif spec == DEVNULL:
                self.child[target] = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
                self.owned.append(self.child[target])
            elif spec == STDOUT:
                if target != 2:
                    raise ValueError("STDOUT is only for stderr")
                self.child[2] = self.child[1] if self.child[1] >= 0 else 1
            elif isinstance(spec, int):
                if spec < 0:
                    raise ValueError(f"bad file descriptor for stdio: {spec}")
                self.child[target] = spec  # sent to the server as it is (SCM_RIGHTS)
            else:
                self.child[target] = spec.fileno()
        return (self.child[0], self.child[1], self.child[2])

    def close_child_ends(self) -> None:
        for fd in self.owned:
            os.close(fd)
        self.owned = []

    def close_all(self) -> None:
        self.close_child_ends()
        for fd in self.parent_ends:
            if fd >= 0:
                os.close(fd)


class _Communication:
    """The state of ``communicate``, kept across a TimeoutExpired as subprocess does."""

    def __init__(self, popen: Popen, data: Any) -> None:
        self.popen = popen
        stdin = popen.stdin
        if data is not None and popen.text_mode and isinstance(stdin, io.TextIOWrapper):
            data = data.encode(stdin.encoding, stdin.errors or "strict")
        self.input: bytes = data or b""
        self.offset = 0
        self.chunks: tuple[list[bytes], list[bytes]] = ([], [])
        self.readers: dict[int, int] = {}  # fd -> 0 (stdout) or 1 (stderr)
        self.streams: dict[int, IO[Any]] = {}
        self.poller = select.poll()
        if stdin is not None:
            if self.input:
                stdin.flush()
                self.streams[stdin.fileno()] = stdin
                self.poller.register(stdin.fileno(), select.POLLOUT)
            else:
                _close_quietly(stdin)
        for index, stream in enumerate((popen.stdout, popen.stderr)):
            if stream is not None:
                self.readers[stream.fileno()] = index
                self.streams[stream.fileno()] = stream
                self.poller.register(stream.fileno(), select.POLLIN)

    def run(self, deadline: float | None) -> None:
        while self.streams:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                output, stderr = self.raw()
                raise TimeoutExpired(self.popen.args, 0.0, output=output, stderr=stderr)
            for fd, _events in self.poller.poll(None if left is None else left * 1000):
                if fd in self.readers:
                    data = os.read(fd, 32768)
                    if data:
                        self.chunks[self.readers[fd]].append(data)
                        continue
                else:
                    try:
                        self.offset += os.write(fd, self.input[self.offset : self.offset + 512])
                    except BrokenPipeError:
                        self.offset = len(self.input)
                    if self.offset < len(self.input):
                        continue
                self.poller.unregister(fd)
                _close_quietly(self.streams.pop(fd))

    def raw(self) -> tuple[bytes | None, bytes | None]:
        """What has been read so far, as bytes (what TimeoutExpired carries)."""
        found = [b"".join(chunks) if chunks else None for chunks in self.chunks]
        return found[0], found[1]

    def results(self) -> tuple[Any, Any]:
        out: list[Any] = []
        for index, stream in enumerate((self.popen.stdout, self.popen.stderr)):
            if stream is None:
                out.append(None)
                continue
            data = b"".join(self.chunks[index])
            if self.popen.text_mode:
                encoding = self.popen.encoding or getattr(stream, "encoding", None) or "utf-8"
                text = data.decode(encoding, self.popen.errors or "strict")
                out.append(text.replace("\r\n", "\n").replace("\r", "\n"))
            else:
                out.append(data)
        return out[0], out[1]


def _warn_fallback(text: str) -> None:
    warnings.warn(text, FallbackWarning, stacklevel=5)


def _close_quietly(stream: IO[Any]) -> None:
    with contextlib.suppress(BrokenPipeError):  # the command did not read all its input
        stream.close()


def run(
    args: Args,
    *,
    input: Any = None,
    capture_output: bool = False,
    timeout: float | None = None,
    check: bool = False,
    **kwargs: Any,
) -> CompletedProcess:
    """Run ``args`` in a new pid namespace and wait for it; subprocess.run's arguments plus
    Popen's namespace options. On timeout the whole namespace is killed and
    TimeoutExpired raised; with a catchable ``kill_signal``, the init ends it instead as
    ``pidns run --timeout`` does: ``kill_signal`` to every process, SIGKILL to what is left
    after ``grace``, and then TimeoutExpired, with all the output."""
    graceful = timeout is not None and kwargs.get("kill_signal", 0) not in (0, signal.SIGKILL)
    if input is not None:
        if kwargs.get("stdin") is not None:
            raise ValueError("stdin and input arguments may not both be used.")
        kwargs["stdin"] = PIPE
    if capture_output:
        if kwargs.get("stdout") is not None or kwargs.get("stderr") is not None:
            raise ValueError("stdout and stderr arguments may not be used with capture_output.")
        kwargs["stdout"] = kwargs["stderr"] = PIPE
    with Popen(args, _timeout=timeout if graceful else None, **kwargs) as process:
        try:
            stdout, stderr = process.communicate(input, timeout=None if graceful else timeout)
        except TimeoutExpired:
            process.kill()  # the whole namespace; the output so far is in the exception
            process.wait()
            raise
        returncode = process.wait()
        namespace = process._namespace
    if graceful and namespace is not None and namespace.timed_out:
        raise TimeoutExpired(process.args, timeout or 0.0, output=stdout, stderr=stderr)
    if check and returncode:
        raise CalledProcessError(returncode, process.args, stdout, stderr)
    return CompletedProcess(process.args, returncode, stdout, stderr, namespace=namespace)


def call(args: Args, *, timeout: float | None = None, **kwargs: Any) -> int:
    """Run ``args`` in a new pid namespace; its returncode (subprocess.call)."""
    with Popen(args, **kwargs) as process:
        try:
            return process.wait(timeout=timeout)
        except TimeoutExpired:
            process.kill()
            process.wait()
            raise


def check_call(args: Args, **kwargs: Any) -> int:
    """``call``, raising CalledProcessError for a non-zero returncode."""
    returncode = call(args, **kwargs)
    if returncode:
        raise CalledProcessError(returncode, _command(args, kwargs.get("shell", False))[1])
    return 0


def check_output(args: Args, *, timeout: float | None = None, **kwargs: Any) -> Any:
    """The command's standard output; CalledProcessError unless it exits 0
    (subprocess.check_output)."""
    if "stdout" in kwargs:
        raise ValueError("stdout argument not allowed, it will be overridden.")
    if kwargs.get("input") is None and kwargs.get("stdin") is None:
        kwargs["input"] = "" if kwargs.get("text") or kwargs.get("universal_newlines") else b""
    return run(args, stdout=PIPE, timeout=timeout, check=True, **kwargs).stdout


__all__ = [
    "DEVNULL",
    "PIPE",
    "STDOUT",
    "CalledProcessError",
    "CompletedProcess",
    "FallbackWarning",
    "Popen",
    "SetupError",
    "TimeoutExpired",
    "call",
    "check_call",
    "check_output",
    "run",
]
