"""The launcher conformance table (benchmarks/launcher_conformance.py): every option of
issue 15 that a peer also has is a row with that peer, and pidns's cells in the rows of
unshare's options, the pause (catatonit -P's), the named namespaces and the joins
(nsenter's spellings) are what the table says they should be. Real kernel, as root."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

from test_run_support import needs_root

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import launcher_conformance as table

pytestmark = [pytest.mark.real, needs_root]

# the options that a peer has too: (pidns's spelling, the peer that has it)
WITH_PEERS = [
    ("-Urpf", table.UNSHARE), ("--kill-child=SIGHUP", table.UNSHARE),
    ("--mount-proc=/mnt", table.UNSHARE), ("--propagation", table.UNSHARE),
    ("--setgroups", table.UNSHARE), ("-R", table.UNSHARE), ("-w", table.UNSHARE),
    ("-S", table.UNSHARE), ("-G", table.UNSHARE), ("--map-user=1000", table.UNSHARE),
    ("--map-group=1000", table.UNSHARE), ("--die-by-signal", table.UNSHARE),
    ("--parent-death-signal", table.TINI), ("--json-status-fd", table.BWRAP),
    ("--rewrite-signal", table.DUMB_INIT), ("--remap-exit", table.TINI),
    ("-v", table.TINI), ("-v", table.DUMB_INIT), ("--pause", table.CATATONIT),
]  # fmt: skip


def _row(title: str) -> tuple[str, object, str, dict[str, list[str]]]:
    (row,) = [row for row in table.FEATURES if row[0] == title]
    return row


def test_every_option_a_peer_has_is_a_row_with_that_peer() -> None:
    for option, peer in WITH_PEERS:
        rows = [
            title
            for title, _, _, spelled in table.FEATURES
            if option in spelled.get(table.PIDNS, []) and peer in spelled
        ]
        assert rows, (option, peer)
    socket = _row("socket activation: LISTEN_PID")[3]
    assert table.CATATONIT in socket  # catatonit's LISTEN_PID rewriting, with no option
    joins = " ".join(row[0] for row in table.JOINS)
    for option in ("-t PID", "-m", "--pid=", "-w", "--root=", "-U", "--preserve-credentials"):
        assert option in joins, option  # pidns exec against nsenter


ROWS = {
    "-Urpf: uid, $$": "0 2",
    "-R / -w /usr: pwd": "/usr",
    "-S 1 -G 1: uid gid": "1 1",
    "--map-user=1000 --map-group=1000": "1000 1000",
    "-U --setgroups deny": "deny",
    "-r --setgroups deny": "deny",
    "--kill-child=SIGHUP (unshare's)": "HUP trapped",
    "pause, joined later (catatonit -P)": "joined as 2 (pidns-init); TERM: 0; left 0",
    "named: run --name, exec --name, stop": "joined as 2; stop: 0; left 0; run: 0",
}


def _cell(title: str, launcher: str) -> str:
    _, function, _, options = _row(title)
    spelled = table.spellings(options)
    if launcher not in spelled:
        pytest.skip(f"{launcher} is not installed (make deps installs it)")
    result: str = function(spelled[launcher])  # type: ignore[operator]
    return result


@pytest.mark.parametrize("title", sorted(ROWS))
def test_pidns_answers_each_row_as_wanted(title: str) -> None:
    assert _cell(title, table.PIDNS) == ROWS[title]


def test_mount_proc_dir_and_propagation_as_unshare_does() -> None:
    if not os.path.isdir("/mnt"):
        pytest.skip("no /mnt to mount a proc over")
    assert _cell("--mount-proc=/mnt: pid 1 there", table.PIDNS) == "pidns-init"
    ours = _cell("--propagation slave: /'s tags", table.PIDNS)
    assert ours == _cell("--propagation slave: /'s tags", table.UNSHARE)


def test_catatonit_pauses_as_pidns_does() -> None:
    if shutil.which("catatonit") is None:
        pytest.skip("no catatonit (make deps installs it)")
    cell = _cell("pause, joined later (catatonit -P)", table.CATATONIT)
    assert cell == "joined as 2 (catatonit); TERM: 0; left 0"


def test_pidns_exec_joins_as_nsenter_spells_it() -> None:
    cells = table.join_table()["pidns exec"]
    assert cells == {title: wanted for title, _, wanted in table.JOINS}
