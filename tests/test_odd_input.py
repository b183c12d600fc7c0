"""Odd input is bad input: exit 2 with one line naming the problem, no traceback, nothing written.

Deeply nested JSON, a binary input file, numbers JSON does not have, thread ids that a terminal
would read as control sequences, a checkpoint stored in a format agent refuses; and the
directories agent creates are private whatever the umask.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import db_snapshot


def _one_line_error(result, expected: str) -> None:
    assert result.exit_code == 2, result.output
    lines = result.stderr.splitlines()
    assert lines[0].startswith("Error: ") and expected in lines[0], result.stderr
    assert "Traceback" not in result.stderr and "Error" not in "\n".join(lines[1:])


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


ODD_INPUTS = {
    "nested 100,000 levels": ('{"request": "x", "actions": ' + _nested(100_000) + "}", "nested more than 100 levels deep"),
    "nested 300 levels": ('{"request": "x", "actions": ' + _nested(300) + "}", "nested more than 100 levels deep"),
    "NaN": ('{"request": NaN}', "is not valid JSON (NaN is not a JSON value at line 1 column 13)"),
    "a number too large to be finite": ('{"request": 1e400}', "holds 1e400, which is not a finite number"),
    "an integer of 5,000 digits": ('{"request": 1' + "0" * 5000 + "}", "is not usable JSON"),
}


@pytest.mark.parametrize("case", list(ODD_INPUTS))
def test_odd_json_input_is_bad_input(cli, db_path: Path, tmp_path: Path, case: str):
    text, expected = ODD_INPUTS[case]
    file = tmp_path / "input.json"
    file.write_text(text)
    _one_line_error(cli("run", "approval", "--thread", "t", "--input", f"@{file}"), expected)
    assert not db_path.exists()


def test_a_binary_input_file_is_bad_input(cli, db_path: Path, tmp_path: Path):
    binary = tmp_path / "input.bin"
    binary.write_bytes(bytes(range(256)) * 4)
    _one_line_error(cli("run", "approval", "--thread", "t", "--input", f"@{binary}"), "is not UTF-8 text")
    assert not db_path.exists()


def test_a_deeply_nested_set_value_is_refused_and_nothing_is_written(cli, db_path: Path):
    assert cli("run", "approval", "--thread", "t", "--background", "--quiet").exit_code == 3
    before = db_snapshot(db_path)
    _one_line_error(cli("resume", "--thread", "t", "--set", "plan=" + _nested(300)), "nested more than 100 levels deep")
    assert db_snapshot(db_path) == before


def test_from_python_a_non_finite_input_is_refused(db_path: Path):
    from runtime import open_database, run_thread
    from runtime.errors import BadInput

    with open_database(db_path, create=True) as db:
        before = db_snapshot(db_path)
        with pytest.raises(BadInput, match="not a finite number"):
            run_thread(db, "risky", "t", {"backoff": float("inf")})
        nested: list = []
        for _ in range(200):
            nested = [nested]
        with pytest.raises(BadInput, match="nested more than 100 levels"):
            run_thread(db, "approval", "t", {"actions": nested})
        assert db_snapshot(db_path) == before


ODD_THREAD_IDS = {
    "a bidi override": "invoice\u202egnp.exe",
    "DEL": "x\x7fy",
    "a C1 control": "x\x9by",
    "a line separator": "x\u2028y",
    "a zero-width space": "x\u200by",
    "a leading space": " lead",
    "a trailing space": "trail ",
    "a no-break space at the end": "trail\u00a0",
}


@pytest.mark.parametrize("case", list(ODD_THREAD_IDS))
def test_an_odd_thread_id_is_refused_at_creation(cli, db_path: Path, case: str):
    _one_line_error(cli("run", "risky", "--thread", ODD_THREAD_IDS[case]), "invalid thread id")
    assert not db_path.exists()


def test_fork_and_python_refuse_an_odd_thread_id_too(cli, db_path: Path):
    from runtime import open_database, run_thread
    from runtime.errors import BadInput

    assert cli("run", "risky", "--thread", "r", "--quiet").exit_code == 0
    before = db_snapshot(db_path)
    _one_line_error(cli("fork", "--thread", "r", "--checkpoint", "0", "--new-thread", "r\u202e2"), "invalid thread id")
    with open_database(db_path) as db, pytest.raises(BadInput, match="invalid thread id"):
        run_thread(db, "risky", " r2", {})
    assert db_snapshot(db_path) == before


STORED_ODD = "evil\x1b]0;owned\x07\u202e[/x]"
"""An id an older version accepted: a terminal title escape, a bidi override, rich markup."""


def _store_odd_thread(cli, db_path: Path) -> None:
    import sqlite3

    assert cli("run", "risky", "--thread", "plain", "--quiet").exit_code == 0
    conn = sqlite3.connect(db_path)
    conn.execute("UPDATE agent_threads SET thread_id = ? WHERE thread_id = 'plain'", (STORED_ODD,))
    conn.execute("UPDATE checkpoints SET thread_id = ? WHERE thread_id = 'plain'", (STORED_ODD,))
    conn.commit()
    conn.close()


def _raw(result) -> str:
    return result.stdout + result.stderr


def test_a_stored_odd_thread_id_is_printed_escaped(cli, db_path: Path):
    _store_odd_thread(cli, db_path)
    listed = cli("threads")
    assert listed.exit_code == 0, listed.output  # rich markup in an id used to crash the table
    for result in (listed, cli("status", "--thread", STORED_ODD), cli("history", "--thread", STORED_ODD)):
        assert result.exit_code == 0, result.output
        assert not any(c in _raw(result) for c in "\x1b\x07\u202e"), _raw(result)
    assert "thread: evil\\u001b]0;owned\\u0007\\u202e[/x]" in cli("status", "--thread", STORED_ODD).stdout
    as_json = cli("threads", "--json")
    assert not any(c in as_json.stdout for c in "\x1b\x07\u202e")
    assert json.loads(as_json.stdout)[0]["thread_id"] == STORED_ODD  # the escapes are JSON's: the id is exact
    missing = cli("state", "--thread", "nope\x1b[2J")
    assert missing.exit_code == 2 and "\x1b" not in _raw(missing)
    deleted = cli("delete", "--thread", STORED_ODD)  # it can still be cleaned up
    assert deleted.exit_code == 0 and "\x1b" not in _raw(deleted), deleted.output


def test_what_agent_creates_is_private_whatever_the_umask(db_path: Path, tmp_path: Path):
    import stat
    import subprocess

    from tests.conftest import ROOT, agent_cmd, agent_env

    deep = tmp_path / "home" / "runs" / "agent.db"
    done = subprocess.run(
        agent_cmd("run", "risky", "--thread", "u", "--db", str(deep), "--quiet"),
        cwd=ROOT, env=agent_env(db_path), capture_output=True, text=True, timeout=120, umask=0o000,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    for directory in (tmp_path / "home", tmp_path / "home" / "runs"):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700, directory
    files = list(deep.parent.glob("agent.db*"))
    assert deep in files and all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in files), [(f.name, oct(f.stat().st_mode)) for f in files]


TAMPERED = {
    "a format agent refuses": ("pickle", b"\x80\x04garbage", "it is stored in a format agent does not read"),
    "bytes that do not decode": ("msgpack", b"\xc1\xc1\xc1", "its data does not decode"),
}


@pytest.mark.parametrize("case", list(TAMPERED))
def test_a_tampered_checkpoint_is_bad_input_and_nothing_runs(cli, db_path: Path, case: str):
    import sqlite3

    assert cli("run", "approval", "--thread", "a", "--background", "--quiet").exit_code == 3
    type_, blob, why = TAMPERED[case]
    conn = sqlite3.connect(db_path)
    latest = conn.execute("SELECT checkpoint_id FROM checkpoints WHERE thread_id = 'a' ORDER BY checkpoint_id DESC LIMIT 1").fetchone()[0]
    conn.execute("UPDATE checkpoints SET type = ?, checkpoint = ? WHERE thread_id = 'a' AND checkpoint_id = ?", (type_, blob, latest))
    conn.commit()
    conn.close()
    before = db_snapshot(db_path)
    expected = f"checkpoint {latest} of thread 'a' cannot be read: {why}"
    for args in (["state", "--thread", "a"], ["diff", "--thread", "a"], ["approvals", "--thread", "a"], ["status", "--thread", "a"],
                 ["resume", "--thread", "a"], ["resume", "--thread", "a", "--checkpoint", latest], ["approve", "--thread", "a", "--all"],
                 ["fork", "--thread", "a", "--checkpoint", latest, "--new-thread", "b"]):  # fmt: skip
        result = cli(*args)
        _one_line_error(result, expected)
        assert "agent resume --thread a --checkpoint ID" in result.stderr, args
    assert db_snapshot(db_path) == before
