"""The feature-probe module on the running kernel: every row probed for real, once; missing
told apart from failing (seccomp's ENOSYS and EPERM, a full fd table); the forced-missing
switch the fallback tests use. The same probes on Linux 3.8 and 6.1 run in
test_kernels.py, under qemu."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from pidns.linux import features

SRC = os.path.dirname(os.path.dirname(os.path.dirname(features.__file__)))


def _python(code: str, env: dict[str, str] | None = None, user: int | None = None) -> str:
    """Run ``code`` in a fresh interpreter (fresh cache), as ``user`` if given; its stdout."""
    python = sys.executable if user is None else "/usr/bin/python3"  # the venv may be private
    done = subprocess.run(
        [python, "-c", textwrap.dedent(code)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": SRC, **(env or {})},
        user=user,
        group=user,
        extra_groups=[] if user is not None else None,
        cwd="/",
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_every_feature_is_present_exactly_from_its_release() -> None:
    # The kernel this runs on decides: a row is present iff the release is at least its own.
    running = features.release_tuple()
    for name, row in features.FEATURES.items():
        since = features.release_tuple(row.since)
        assert features.has(name) is (running >= since), (name, features.release())


def test_unprivileged_probes_give_the_same_answers() -> None:
    code = """
        import json
        from pidns.linux import features
        print(json.dumps({n: features.has(n) for n in features.FEATURES}))
    """
    as_nobody = json.loads(_python(code, user=65534))
    assert as_nobody == {n: features.has(n) for n in features.FEATURES}


def test_each_feature_is_probed_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    row = features.FEATURES["pidfd_open"]
    real = row.probe

    def counting() -> bool:
        calls.append(row.name)
        return real()

    monkeypatch.setattr(row, "probe", counting)
    features.forget()
    try:
        assert [features.has("pidfd_open") for _ in range(3)] == [features.has("pidfd_open")] * 3
        assert calls == ["pidfd_open"]
    finally:
        features.forget()


def test_forced_missing_features_raise_one_line_naming_feature_and_release() -> None:
    out = _python(
        """
        from pidns.linux import features
        print(features.has("clone3"), features.has("pidfd_open"), features.has("nspid"))
        try:
            features.require("set_tid", "a set_tid step")
        except features.Missing as e:
            print(e)
        print(sorted(f.name for f in features.missing()))
        """,
        env={features.ENV: "clone3, set_tid"},
    )
    first, message, names = out.splitlines()
    assert first == "False True True"
    assert message == (
        f"set_tid (clone3's set_tid, Linux 5.5) is missing on this kernel "
        f"({os.uname().release}), needed for a set_tid step"
    )
    assert names == str(["clone3", "set_tid"])
    everything = _python(
        "from pidns.linux import features; print(len(features.missing()))",
        env={features.ENV: "all"},
    )
    assert int(everything) == len(features.FEATURES)


def test_an_unknown_feature_name_is_a_key_error_listing_the_known_ones() -> None:
    with pytest.raises(KeyError, match=r"unknown kernel feature 'pidfd'.*pidfd_open"):
        features.has("pidfd")


# A seccomp filter (as container runtimes install) answering chosen syscalls with an errno:
# the probes must call that "missing" for ENOSYS and for EPERM alike.
_SECCOMP = """
    import ctypes, errno, struct
    libc = ctypes.CDLL(None, use_errno=True)
    def refuse(numbers, err):
        code = []
        code.append(struct.pack("HBBI", 0x20, 0, 0, 0))  # A = seccomp_data.nr
        for nr in numbers:  # if A == nr: return ERRNO(err)
            code.append(struct.pack("HBBI", 0x15, 0, 1, nr))
            code.append(struct.pack("HBBI", 0x06, 0, 0, 0x00050000 | err))
        code.append(struct.pack("HBBI", 0x06, 0, 0, 0x7FFF0000))  # ALLOW
        blob = ctypes.create_string_buffer(b"".join(code))
        prog = struct.pack("HxxxxxxQ", len(code), ctypes.addressof(blob))
        progbuf = ctypes.create_string_buffer(prog)
        assert libc.prctl(38, 1, 0, 0, 0) == 0  # PR_SET_NO_NEW_PRIVS
        address = ctypes.c_ulong(ctypes.addressof(progbuf))
        assert libc.prctl(22, 2, address, 0, 0) == 0, ctypes.get_errno()  # SECCOMP_MODE_FILTER
"""


@pytest.mark.parametrize("err", ["ENOSYS", "EPERM"])
def test_a_seccomp_refusal_reads_as_missing(err: str) -> None:
    out = _python(
        _SECCOMP
        + f"""
    from pidns.linux import features
    refuse([434, 435, 436, 431], errno.{err})  # pidfd_open, clone3, close_range, fsconfig
    names = ["pidfd_open", "clone3", "set_tid", "setns_pidfd", "close_range",
             "new_mount_api", "nspid", "pid_for_children"]
    print(" ".join(str(features.has(n)) for n in names))
    """
    )
    assert out.split() == ["False"] * 6 + ["True", "True"]  # setns_pidfd needs pidfd_open


def test_another_error_is_raised_and_not_cached() -> None:
    # With no fd left, pidfd_open fails with EMFILE: that is this process's state, not the
    # kernel's, so the probe raises it, and probes again once an fd is free.
    out = _python(
        """
        import os, resource
        from pidns.linux import features
        resource.setrlimit(resource.RLIMIT_NOFILE, (3, 3))
        try:
            features.has("pidfd_open")
        except OSError as e:
            print("raised", e.errno == __import__("errno").EMFILE)
        os.close(2)
        print("then", features.has("pidfd_open"))
        """
    )
    assert out.split() == ["raised", "True", "then", "True"]


@pytest.mark.parametrize(
    ("text", "numbers"),
    [
        ("3.8.13", (3, 8, 13)),
        ("3.8.13-pidns", (3, 8, 13)),
        ("6.1.0-41-amd64", (6, 1, 0)),
        ("6.18.0-rc3", (6, 18, 0)),
        ("6.14", (6, 14)),
        ("5.10.0+", (5, 10, 0)),
    ],
)
def test_release_numbers(text: str, numbers: tuple[int, ...]) -> None:
    assert features.release_tuple(text) == numbers


@pytest.mark.parametrize(
    ("release", "version", "upstream"),
    [
        ("6.1.0-50-amd64", "#1 SMP PREEMPT_DYNAMIC Debian 6.1.176-1 (2026-07-02)", "6.1.176"),
        ("6.1.0-57-amd64", "#1 SMP PREEMPT_DYNAMIC Debian 6.1.192-1 (2026-10-11)", "6.1.192"),
        ("6.18.44-fc-v1098", "#1 SMP PREEMPT_DYNAMIC @0", "6.18.44-fc-v1098"),
        ("3.8.13-pidns", "#1 SMP Mon Jan 1 00:00:00 UTC 2013", "3.8.13-pidns"),
        ("6.1.0-50-amd64", "#1 SMP Debian 6.12.1-1", "6.1.0-50-amd64"),  # not its line
        ("6.1.0-50-amd64", "#1 SMP Debian 6.1.x-1", "6.1.0-50-amd64"),
    ],
)
def test_the_upstream_release_of_a_distributions_kernel(
    release: str, version: str, upstream: str
) -> None:
    assert features.upstream_release(release, version) == upstream


def test_docs_list_every_feature_with_its_release() -> None:
    root = os.path.dirname(SRC)
    with open(os.path.join(root, "docs", "kernels.md"), encoding="utf-8") as f:
        table = f.read().split("## ")[0]  # the feature table comes before the sections
    rows = [line.split("|") for line in table.splitlines() if line.startswith("| `")]
    listed = {cells[1].strip().strip("`"): cells[3].strip() for cells in rows}
    assert listed == {name: row.since for name, row in features.FEATURES.items()}
