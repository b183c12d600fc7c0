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
    "NaN": ('{"request": NaN}', "holds NaN, which is not a finite number"),
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
