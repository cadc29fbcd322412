"""Boot a kernel image under qemu and run one pidns command inside it (``pidns check --kernel``).

The guest's root is an initramfs made of this machine's own pieces: a Python (the
host's /usr/bin/python3, standard library only, with the shared libraries it loads), the
pidns source tree, the files the command names (at their own paths) and a Python /init
(``pidns.linux.guest_init``). Nothing of the host is shared at run time (Linux 3.8
cannot have 9p and user namespaces together), so the guest reports back on serial
ports, one each: the kernel's console (ttyS0, kept for errors), the command's stdout
(ttyS1, streamed), its stderr (ttyS2, streamed), and its exit status (ttyS3: one line,
then a cpio archive of the directory the command saved files in, check's reproducers;
3.8's 8250 driver makes only four ports).

The part that never changes (Python, its libraries) is built once and cached in
``$XDG_CACHE_HOME/pidns/guest`` (default ~/.cache); each run adds a small archive.

Acceleration: KVM where /dev/kvm is real KVM, else TCG. This machine's /dev/kvm is a
PVM variant (module kvm_pvm), which boots only PVM-aware guests, so TCG is used with a
note. ``PIDNS_QEMU_ACCEL=tcg|kvm`` decides instead.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterable, Iterator

from pidns.linux import cpio

GUEST_PYTHON = "/usr/bin/python3"
QEMU = "qemu-system-x86_64"
_PRUNE = ("test", "idlelib", "tkinter", "turtledemo", "ensurepip", "lib2to3", "pydoc_data")


class GuestError(Exception):
    """The guest could not be booted or did not report (one line says why): status 125."""


def cache_dir() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "pidns", "guest")


def accelerator() -> tuple[str, str, str]:
    """``(accel, cpu, note)``: KVM if usable and not the PVM variant, else TCG."""
    chosen = os.environ.get("PIDNS_QEMU_ACCEL", "")
    pvm = os.path.exists("/sys/module/kvm_pvm")
    usable = os.access("/dev/kvm", os.R_OK | os.W_OK)
    if chosen == "kvm" or (not chosen and usable and not pvm):
        return "kvm", "host", ""
    note = ""
    if not chosen and pvm:
        note = "/dev/kvm is kvm_pvm (boots only PVM-aware guests): using TCG, slower"
    elif not chosen and not usable:
        note = "no usable /dev/kvm: using TCG, slower"
    # qemu64: Linux 3.8's init dies of SIGSEGV at once under -cpu max
    return "tcg", "qemu64", note


# ---- the base archive: Python and what it loads -------------------------------------------


def _python_paths(python: str) -> tuple[str, str, str]:
    """``(executable, stdlib, lib-dynload)`` of the guest's Python."""
    code = (
        "import sys, sysconfig, os; "
        "print(os.path.realpath(sys.executable)); "
        "print(sysconfig.get_paths()['stdlib']); "
        "print(sysconfig.get_config_var('DESTSHARED') or '')"
    )
    try:
        out = subprocess.run(
            [python, "-I", "-c", code], capture_output=True, text=True, check=True, timeout=30
        ).stdout.split("\n")
    except (OSError, subprocess.SubprocessError) as err:
        raise GuestError(f"cannot run the guest's Python {python}: {err}") from None
    return out[0], out[1], out[2]


def _libraries(paths: Iterable[str]) -> set[str]:
    """Every shared library the given ELF files load (ldd), by the names ldd gives."""
    found: set[str] = set()
    for path in paths:
        try:
            out = subprocess.run(
                ["ldd", path], capture_output=True, text=True, check=False, timeout=30
            ).stdout
        except OSError as err:
            raise GuestError(f"cannot run ldd (libc-bin): {err}") from None
        for word in out.split():
            if word.startswith("/") and ".so" in word:
                found.add(word)
    return found


def _walk(top: str) -> Iterator[str]:
    for here, dirs, files in os.walk(top):
        dirs[:] = sorted(
            d
            for d in dirs
            if d not in _PRUNE and not d.startswith("config-") and d != "site-packages"
        )
        yield here
        for name in sorted(files):
            yield os.path.join(here, name)


def base_archive(python: str = GUEST_PYTHON) -> str:
    """The cached cpio of the guest's Python (built on first use, or when Python changes)."""
    executable, stdlib, dynload = _python_paths(python)
    stat = os.stat(executable)
    key = hashlib.sha256(
        f"{executable}:{stat.st_mtime_ns}:{stat.st_size}:{stdlib}:{cpio.FORMAT}".encode()
    ).hexdigest()[:16]
    path = os.path.join(cache_dir(), f"base-{key}.cpio")
    if os.path.exists(path):
        return path
    os.makedirs(cache_dir(), exist_ok=True)
    elves = [executable] + [
        os.path.join(dynload, n) for n in os.listdir(dynload) if n.endswith(".so")
    ]
    fd, tmp = tempfile.mkstemp(dir=cache_dir(), suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            archive = cpio.Writer(out)
            for d in ("proc", "sys", "dev", "tmp", "run", "root", "etc", "usr/bin", "usr/lib"):
                archive.directory(d)
            for link in ("bin", "lib", "lib64", "sbin"):
                archive.symlink(link, f"usr/{link}" if link != "sbin" else "usr/bin")
            archive.directory("usr/lib64")
            # before /dev is mounted: Python reads urandom at start-up (3.8 has no getrandom)
            for name, major, minor in (("null", 1, 3), ("zero", 1, 5), ("urandom", 1, 9)):
                archive.device(f"dev/{name}", major, minor)
            archive.file("usr/bin/" + os.path.basename(executable), executable)
            archive.symlink("usr/bin/python3", os.path.basename(executable))
            for name in _libraries(elves):
                real = os.path.realpath(name)
                archive.file(real.lstrip("/"), real)
                if name != real:  # keep ldd's name, e.g. /lib64/ld-linux-x86-64.so.2
                    archive.symlink(name.lstrip("/"), real)
            for entry in _walk(stdlib):
                archive.add(entry.lstrip("/"), entry)
            archive.data("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n")
            archive.data("etc/group", b"root:x:0:\n")
            archive.finish()
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    return path


# ---- one run -----------------------------------------------------------------------------


def _source_root() -> str:
    """The directory holding the ``pidns`` package this process runs."""
    import pidns  # noqa: PLC0415 - only to find where it lives

    return os.path.dirname(os.path.dirname(os.path.realpath(pidns.__file__)))


def _run_archive(out_path: str, argv: list[str], files: list[str], save: str | None) -> None:
    src = _source_root()
    cwd = os.getcwd()
    with open(out_path, "wb") as out:
        archive = cpio.Writer(out)
        archive.data(
            "run.json",
            json.dumps(
                {
                    "argv": argv,
                    "cwd": cwd,
                    "src": src,
                    "save": save,
                    "python": GUEST_PYTHON,
                }
            ).encode(),
        )
        archive.file("init", os.path.join(src, "pidns", "linux", "guest_init.py"), mode=0o755)
        for entry in _walk(os.path.join(src, "pidns")):
            if "__pycache__" not in entry:
                archive.add(entry.lstrip("/"), entry, parents=True)
        archive.directory(cwd.lstrip("/"), parents=True)
        for name in files:
            real = os.path.abspath(name)
            archive.add(real.lstrip("/"), real, parents=True)
        archive.finish()


def run(
    kernel: str,
    argv: list[str],
    files: list[str],
    save: str | None = None,
    *,
    memory: str = "1G",
    cpus: int = 2,
    timeout: float | None = None,
    stdout: int = 1,
    stderr: int = 2,
) -> tuple[int, float]:
    """Boot ``kernel``, run ``python3 ARGV...`` in it (e.g. ``-m pidns check ...``); stream
    its stdout and stderr to the given fds. Returns ``(exit status, seconds in qemu)``.

    ``files`` are copied in at their own paths; ``save`` (a directory, relative to the
    current one) comes back with whatever the command wrote there. Raises GuestError."""
    if not os.access(kernel, os.R_OK):
        raise GuestError(f"cannot read kernel image {kernel}")
    qemu = shutil.which(QEMU)
    if qemu is None:
        raise GuestError(f"{QEMU} is not installed (apt-get install qemu-system-x86)")
    accel, cpu, note = accelerator()
    if note:
        os.write(stderr, f"pidns: {note}\n".encode())
    base = base_archive()
    with tempfile.TemporaryDirectory(prefix="pidns-guest-") as tmp:
        ports = {n: os.path.join(tmp, n) for n in ("console", "out", "err", "rc")}
        for path in ports.values():
            open(path, "wb").close()
        run_cpio = os.path.join(tmp, "run.cpio")
        _run_archive(run_cpio, argv, files, save)
        initrd = os.path.join(tmp, "initrd")
        with open(initrd, "wb") as joined:
            for part in (base, run_cpio):
                with open(part, "rb") as f:
                    shutil.copyfileobj(f, joined, 1 << 20)
        command = [
            qemu,
            "-accel", accel, "-cpu", cpu, "-m", memory, "-smp", str(cpus),
            "-nodefaults", "-display", "none", "-vga", "none", "-monitor", "none",
            "-no-reboot",
            *(x for n in ("console", "out", "err", "rc") for x in ("-serial", f"file:{ports[n]}")),
            "-kernel", kernel, "-initrd", initrd,
            "-append", "console=ttyS0 panic=-1 rdinit=/init quiet loglevel=4",
        ]  # fmt: skip
        started = time.monotonic()
        try:
            proc = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
            )
        except OSError as err:
            raise GuestError(f"cannot start {QEMU}: {err}") from None
        try:
            _stream(proc, ports["out"], ports["err"], stdout, stderr, started, timeout)
        finally:
            if proc.poll() is None:
                proc.kill()
            qemu_output = proc.communicate()[0].decode(errors="replace")
        seconds = time.monotonic() - started
        with open(ports["rc"], "rb") as f:  # the status line, then the saved files' archive
            status_line, _, saved = f.read().partition(b"\n")
        text = status_line.decode(errors="replace").strip()
        if not text.isdigit():
            with open(ports["console"], "rb") as f:
                console = f.read().decode(errors="replace").splitlines()[-15:]
            why = "timed out" if timeout and seconds >= timeout else "reported no exit status"
            raise GuestError(
                f"the guest ({kernel}) {why}; qemu said: {qemu_output.strip()[-300:] or '-'}; "
                "its console ends:\n" + "\n".join(console)
            )
        if save and saved:
            _unpack(saved, save)
        return int(text), seconds


def _stream(
    proc: subprocess.Popen[bytes],
    out_path: str,
    err_path: str,
    stdout: int,
    stderr: int,
    started: float,
    timeout: float | None,
) -> None:
    """Copy what the guest writes on its stdout and stderr ports while qemu runs."""
    with open(out_path, "rb") as out, open(err_path, "rb") as err:
        while True:
            done = proc.poll() is not None
            for src, dst in ((out, stdout), (err, stderr)):
                chunk = src.read()
                while chunk:
                    written = os.write(dst, chunk)
                    chunk = chunk[written:]
            if done:
                return
            if timeout is not None and time.monotonic() - started > timeout:
                proc.kill()
                proc.wait()
                return
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(0.1)


def _unpack(data: bytes, directory: str) -> None:
    """The files the guest saved (a cpio archive) into ``directory``."""
    for name, body in cpio.read(data):
        if os.path.isabs(name) or ".." in name.split("/"):
            continue  # only names inside the saved directory
        target = os.path.join(directory, name)
        os.makedirs(os.path.dirname(target) or ".", exist_ok=True)
        with open(target, "wb") as f:
            f.write(body)


__all__ = ["GuestError", "accelerator", "base_archive", "run"]
