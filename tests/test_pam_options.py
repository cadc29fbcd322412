"""pam_pidns's PAM-line options: parsing, refusal of broken lines, and who gets selected."""

from __future__ import annotations

import grp
import pwd

import pytest

from pidns.pam.options import OptionError, Options, groups_of, parse

NOBODY = pwd.getpwuid(65534).pw_name
NOBODY_GROUP = grp.getgrgid(pwd.getpwuid(65534).pw_gid).gr_name


def test_no_options_select_every_user() -> None:
    options = parse([])
    assert options == Options()
    assert options.select("alice") == (
        True,
        "no users= or groups= given: every user is selected",
    )


def test_flags_and_lists_are_read() -> None:
    options = parse(["users=alice,bob", "groups=pidns", "mount_proc", "debug"])
    assert options.users == {"alice", "bob"}
    assert options.groups == {"pidns"}
    assert options.mount_proc
    assert options.debug
    assert not options.exclude_users


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (["bogus"], "unknown option 'bogus'"),
        (["users"], "option users= needs a comma-separated list of names"),
        (["users="], "option users= needs a comma-separated list of names"),
        (["groups=a,,b"], "empty name in groups='a,,b'"),
        (["mount_proc=yes"], "option 'mount_proc' takes no value"),
        (["debug", "debug"], "option 'debug' given twice"),
        (["users=a", "users=b"], "option 'users' given twice"),
        (["Mount_Proc"], "unknown option 'Mount_Proc'"),
    ],
)
def test_broken_lines_are_refused_with_the_reason(line: list[str], message: str) -> None:
    with pytest.raises(OptionError) as caught:
        parse(line)
    assert message in str(caught.value)


def test_the_unknown_option_error_lists_the_known_ones() -> None:
    with pytest.raises(OptionError) as caught:
        parse(["mountproc"])
    assert "known: users=, groups=, exclude_users=, exclude_groups=, mount_proc, debug" in str(
        caught.value
    )


def test_users_list_selects_only_those_users() -> None:
    options = parse(["users=alice,bob"])
    assert options.select("alice")[0]
    assert options.select("bob")[0]
    assert options.select("carol") == (False, "carol is neither in users nor in a group of groups")


def test_groups_select_members_through_nss() -> None:
    # nobody's primary group (nogroup on Debian) comes from os.getgrouplist.
    assert NOBODY_GROUP in groups_of(NOBODY)
    options = parse([f"groups={NOBODY_GROUP}"])
    assert options.select(NOBODY) == (True, f"{NOBODY} is in group {NOBODY_GROUP}")
    assert not options.select("root")[0]


def test_users_or_groups_either_one_selects() -> None:
    options = parse(["users=root", f"groups={NOBODY_GROUP}"])
    assert options.select("root")[0]
    assert options.select(NOBODY)[0]


def test_exclusions_win_over_selection() -> None:
    options = parse([f"users={NOBODY},root", "exclude_users=root"])
    assert options.select("root") == (False, "root is in exclude_users")
    assert options.select(NOBODY)[0]
    by_group = parse([f"exclude_groups={NOBODY_GROUP}"])
    assert by_group.select(NOBODY) == (
        False,
        f"{NOBODY} is in group {NOBODY_GROUP} (exclude_groups)",
    )
    assert by_group.select("root")[0]


def test_an_unknown_user_is_in_no_group() -> None:
    assert groups_of("no-such-user-pidns-test") == frozenset()
    assert not parse(["groups=root"]).select("no-such-user-pidns-test")[0]
