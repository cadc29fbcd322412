"""The module's arguments on the PAM line, and which users they select.

``session required pam_python.so /path/pam_pidns.py [users=a,b] [groups=g] [exclude_users=u]
[exclude_groups=g] [mount_proc] [debug]``

A user is selected when no ``users=``/``groups=`` is given, or the user is listed in
``users=``, or is a member (primary or supplementary, through NSS) of a group in ``groups=``;
and then is not listed in ``exclude_users=`` nor a member of a group in ``exclude_groups=``.
Anything else on the line (an unknown word, a list without names, a flag with a value, an
option given twice) is an ``OptionError``: the module refuses the session rather than guess.
"""

from __future__ import annotations

import grp
import os
import pwd
from dataclasses import dataclass

FLAGS = ("mount_proc", "debug")
LISTS = ("users", "groups", "exclude_users", "exclude_groups")


class OptionError(ValueError):
    """A broken argument on the PAM line; the message names it."""


@dataclass(frozen=True, slots=True)
class Options:
    users: frozenset[str] = frozenset()
    groups: frozenset[str] = frozenset()
    exclude_users: frozenset[str] = frozenset()
    exclude_groups: frozenset[str] = frozenset()
    mount_proc: bool = False
    debug: bool = False

    def select(self, user: str) -> tuple[bool, str]:
        """Whether ``user`` gets a namespace, and why (for the debug log)."""
        member_of = groups_of(user) if self.groups or self.exclude_groups else frozenset()
        if user in self.exclude_users:
            return False, f"{user} is in exclude_users"
        excluded_by = sorted(member_of & self.exclude_groups)
        if excluded_by:
            return False, f"{user} is in group {excluded_by[0]} (exclude_groups)"
        if not self.users and not self.groups:
            return True, "no users= or groups= given: every user is selected"
        if user in self.users:
            return True, f"{user} is in users"
        included_by = sorted(member_of & self.groups)
        if included_by:
            return True, f"{user} is in group {included_by[0]}"
        return False, f"{user} is neither in users nor in a group of groups"


def groups_of(user: str) -> frozenset[str]:
    """Names of the user's primary and supplementary groups (empty for an unknown user)."""
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        return frozenset()
    names: set[str] = set()
    for gid in os.getgrouplist(user, entry.pw_gid):
        try:
            names.add(grp.getgrgid(gid).gr_name)
        except KeyError:
            continue
    return frozenset(names)


def parse(args: list[str]) -> Options:
    """The arguments after the module path, e.g. ``["users=alice,bob", "mount_proc"]``."""
    flags: set[str] = set()
    lists: dict[str, frozenset[str]] = {}
    for arg in args:
        key, eq, value = arg.partition("=")
        if key in flags or key in lists:
            raise OptionError(f"option {key!r} given twice")
        if key in FLAGS:
            if eq:
                raise OptionError(f"option {key!r} takes no value (got {arg!r})")
            flags.add(key)
        elif key in LISTS:
            lists[key] = _names(key, value, eq)
        else:
            known = ", ".join([f"{name}=" for name in LISTS] + list(FLAGS))
            raise OptionError(f"unknown option {arg!r} (known: {known})")
    empty: frozenset[str] = frozenset()
    return Options(
        users=lists.get("users", empty),
        groups=lists.get("groups", empty),
        exclude_users=lists.get("exclude_users", empty),
        exclude_groups=lists.get("exclude_groups", empty),
        mount_proc="mount_proc" in flags,
        debug="debug" in flags,
    )


def _names(key: str, value: str, eq: str) -> frozenset[str]:
    if not eq or not value:
        raise OptionError(f"option {key}= needs a comma-separated list of names")
    names = value.split(",")
    if any(not name for name in names):
        raise OptionError(f"empty name in {key}={value!r}")
    return frozenset(names)
