"""Creation rules: unshare, clone flags, setns, capabilities, nesting (docs/rules.md A-E, J)."""

from __future__ import annotations

import pytest

from model_helpers import errno_of, new_ns_init, unprivileged
from pidns.core import flags as cf
from pidns.model import Kernel, TaskState


def test_unshare_needs_cap_sys_admin_unless_a_user_ns_comes_with_it() -> None:  # A3, J1
    k = Kernel(root_level=1)
    a = unprivileged(k, k.fork(k.init))
    assert errno_of(k.unshare, a, cf.NEWPID) == "EPERM"
    k.unshare(a, cf.NEWUSER | cf.NEWPID)
    assert a.children_ns.user_ns is a.user_ns  # the new pid ns is owned by the new user ns
    # inside its own user namespace the caller now has the capability: EINVAL, not EPERM
    assert errno_of(k.unshare, a, cf.NEWPID) == "EINVAL"


def test_clone_newpid_without_capability_is_eperm_with_newuser_fine() -> None:  # B4
    k = Kernel()
    a = unprivileged(k, k.fork(k.init))
    assert errno_of(k.clone, a, cf.NEWPID) == "EPERM"
    child = k.clone(a, cf.NEWPID | cf.NEWUSER)
    assert k.getpid(child) == 1 and child.caps and not a.caps


def test_unknown_unshare_flags_are_einval() -> None:  # A2
    k = Kernel()
    assert errno_of(k.unshare, k.init, cf.PTRACE) == "EINVAL"


def test_newcgroup_and_newtime_unshare_exist_only_today() -> None:  # profile table
    old = Kernel(profile="3.8")
    assert errno_of(old.unshare, old.init, cf.NEWTIME) == "EINVAL"
    assert errno_of(old.unshare, old.init, cf.NEWCGROUP) == "EINVAL"
    today = Kernel()
    today.unshare(today.init, cf.NEWCGROUP | cf.NEWTIME)


@pytest.mark.parametrize("profile", ["6.18", "3.8"])
def test_clone_newpid_after_unshare_is_einval(profile: str) -> None:  # A4; selftest clone3.c
    k = Kernel(profile=profile)
    a = k.fork(k.init)
    k.unshare(a, cf.NEWPID)
    assert errno_of(k.clone, a, cf.NEWPID) == "EINVAL"
    init = k.fork(a)
    nested = k.clone(init, cf.NEWPID)  # the forked child may go deeper
    assert k.nspid(nested) == (4, 2, 1)


def test_threads_after_unshare_are_einval_vm_is_fine_today() -> None:  # A7, L2
    k = Kernel()
    a = k.fork(k.init)
    k.unshare(a, cf.NEWPID)
    assert errno_of(k.clone_thread, a, cf.THREAD | cf.SIGHAND | cf.VM) == "EINVAL"
    first = k.clone(a, cf.VM | cf.VFORK)  # a vfork child becomes pid 1 if first
    assert k.getpid(first) == 1
    old = Kernel(profile="3.8")
    b = old.fork(old.init)
    old.unshare(b, cf.NEWPID)
    assert errno_of(old.clone, b, cf.VM) == "EINVAL"  # 3.8: no vfork either


def test_flag_combinations_copy_process_refuses() -> None:  # B1
    k = Kernel()
    a = k.fork(k.init)
    assert errno_of(k.clone_thread, a, cf.THREAD) == "EINVAL"
    assert errno_of(k.clone, a, cf.SIGHAND) == "EINVAL"
    assert errno_of(k.clone, a, cf.NEWNS | cf.FS) == "EINVAL"
    assert errno_of(k.clone, a, cf.NEWUSER | cf.FS) == "EINVAL"
    assert errno_of(k.clone_thread, a, cf.THREAD | cf.SIGHAND | cf.VM | cf.NEWPID) == "EINVAL"


def test_clone_parent_from_init_is_einval() -> None:  # B2, L4; gVisor CloneParentInitProcessFails
    k = Kernel()
    a = k.fork(k.init)
    init = new_ns_init(k, a)
    assert errno_of(k.clone, init, cf.PARENT) == "EINVAL"
    assert errno_of(k.clone, init, cf.PARENT | cf.NEWPID) == "EINVAL"


def test_newpid_with_parent_is_allowed_today_not_in_3_8() -> None:  # B2, L3
    k = Kernel(root_level=1)
    a = k.fork(k.init)
    child = k.clone(a, cf.NEWPID | cf.PARENT)
    assert child.parent is k.init  # a sibling of the caller
    assert (k.getpid(child), k.getppid(child)) == (1, 0)
    assert errno_of(k.wait, a, child) == "ECHILD"
    old = Kernel(profile="3.8", root_level=1)
    b = old.fork(old.init)
    assert errno_of(old.clone, b, cf.NEWPID | cf.PARENT) == "EINVAL"
    assert errno_of(old.clone, b, cf.NEWUSER | cf.PARENT) == "EINVAL"


@pytest.mark.parametrize(("profile", "too_deep"), [("6.18", "ENOSPC"), ("3.8", "EINVAL")])
def test_nesting_stops_at_level_32(profile: str, too_deep: str) -> None:  # A5, L6; LTP pidns32
    k = Kernel(profile=profile)
    task = k.init
    for _ in range(32):
        task = new_ns_init(k, task)
    assert task.ns.level == 32 and k.getpid(task) == 1
    assert errno_of(k.clone, task, cf.NEWPID) == too_deep
    assert errno_of(k.unshare, task, cf.NEWPID) == too_deep


def test_root_level_counts_against_the_limit() -> None:  # the real backend's world
    k = Kernel(root_level=1)
    task = k.init
    for _ in range(31):
        task = new_ns_init(k, task)
    assert task.ns.level == 32
    assert errno_of(k.clone, task, cf.NEWPID) == "ENOSPC"


def test_pid_for_children_resolves_only_once_the_namespace_has_an_init() -> None:  # D3
    k = Kernel(root_level=1)
    a = k.fork(k.init)
    b = k.fork(k.init)
    k.unshare(a, cf.NEWPID)
    assert errno_of(k.setns, b, a, for_children=True) == "ENOENT"
    init = k.fork(a)
    k.exit(init, 0)
    k.wait(a, init)
    k.setns(b, a, for_children=True)  # still resolves: child_reaper is never cleared
    assert b.children_ns is a.children_ns
    assert errno_of(k.fork, b) == "ENOMEM"  # B6: but the namespace is dead


def test_pid_for_children_link_is_missing_in_3_8() -> None:
    k = Kernel(profile="3.8")
    a = k.fork(k.init)
    assert errno_of(k.setns, k.init, a, for_children=True) == "ENOENT"


def test_setns_target_must_be_own_or_descendant() -> None:  # E3
    k = Kernel(root_level=1)
    a = k.fork(k.init)
    inner = new_ns_init(k, a)
    sibling = new_ns_init(k, a)
    k.setns(a, inner)  # a descendant: fine
    child = k.fork(a)
    assert (k.getpid(child), k.getppid(child)) == (2, 0)  # E3, F1: pid 2 with ppid 0
    assert errno_of(k.setns, inner, a) == "EINVAL"  # an ancestor
    assert errno_of(k.setns, inner, sibling) == "EINVAL"  # a sibling
    k.setns(inner, inner)  # its own
    assert k.getpid(a) == 2  # setns never moves the caller


def test_setns_needs_capabilities() -> None:  # E3, J2
    k = Kernel()
    a = k.fork(k.init)
    root_owned = new_ns_init(k, a)
    unprivileged(k, a)
    assert errno_of(k.setns, a, root_owned) == "EACCES"  # cannot even open its ns link
    own = k.clone(a, cf.NEWUSER | cf.NEWPID)
    # a changed its uid: it and its children are not dumpable, so even the same uid
    # cannot open their links (ptrace access), zombies included (checked on 6.18)
    assert errno_of(k.setns, a, own) == "EACCES"
    k.exit(own, 0)
    assert errno_of(k.setns, a, own) == "EACCES"
    # inspectable, but without CAP_SYS_ADMIN over the target namespace's owner: EPERM
    b = k.fork(k.init)
    k.unshare(b, cf.NEWUSER)  # b: all capabilities, in a user ns below the world's
    c = k.fork(b)
    assert errno_of(k.setns, c, b) == "EPERM"  # b's pid ns is owned by the root user ns


def test_setns_on_zombies_and_reaped_targets() -> None:
    k = Kernel(root_level=1)
    a = k.fork(k.init)
    b = k.fork(k.init)
    inner = new_ns_init(k, a)
    k.exit(inner, 0)
    assert inner.state is TaskState.ZOMBIE
    k.setns(b, inner)  # /proc/ZOMBIE/ns/pid still names its namespace
    assert errno_of(k.setns, b, inner, for_children=True) == "ENOENT"  # no nsproxy
    k.wait(a, inner)
    assert errno_of(k.setns, b, inner) == "ESRCH"


def test_the_creator_user_ns_must_be_below_the_parent_owner() -> None:  # A5, J3
    k = Kernel()
    a = k.fork(k.init)
    owned = k.clone(a, cf.NEWUSER | cf.NEWPID)  # pid ns owned by a child user ns
    k.setns(k.init, owned)  # host root may join it ...
    joined = k.fork(k.init)
    # ... but its children (host credentials) may not nest a pid ns below it
    assert errno_of(k.clone, joined, cf.NEWPID) == "EINVAL"
    assert errno_of(k.unshare, joined, cf.NEWPID) == "EINVAL"
    old = Kernel(profile="3.8")
    b = old.fork(old.init)
    owned_old = old.clone(b, cf.NEWUSER | cf.NEWPID)
    old.setns(old.init, owned_old)
    old.clone(old.fork(old.init), cf.NEWPID)  # 3.8 had no such check


def test_a_new_user_namespace_needs_the_creators_uid_mapped() -> None:  # create_user_ns
    k = Kernel()
    a = k.fork(k.init)
    k.unshare(a, cf.NEWUSER)  # no uid_map is ever written in the model
    assert errno_of(k.unshare, a, cf.NEWUSER) == "EPERM"
    assert errno_of(k.clone, a, cf.NEWUSER | cf.NEWPID) == "EPERM"
    assert errno_of(k.unshare, a, cf.NEWUSER | cf.NEWPID) == "EPERM"  # before the pid check


def test_user_namespaces_nest_at_most_33_deep() -> None:
    deep = Kernel(mapped_uids=None, user_level=32)  # a root user namespace at level 32
    assert deep.clone(deep.init, cf.NEWUSER).user_ns.level == 33
    deeper = Kernel(user_level=33)
    assert errno_of(deeper.clone, deeper.init, cf.NEWUSER) == "ENOSPC"
    old = Kernel(profile="3.8", user_level=40)  # 3.8 had no limit
    assert old.clone(old.init, cf.NEWUSER).user_ns.level == 41
