"""LangGraph's own checkpointer tests (pregel, async pregel, time travel, interrupts, subgraphs,
the functional API), on our SQLite saver and on our PostgreSQL savers, and
langgraph-checkpoint-sqlite's saver tests, run against our savers as the project opens them, each
suite in a pytest process of its own (tests/langgraph_suite); how the pinned sources behave when
they are tampered with, unreachable or of another version; and how the PostgreSQL suite's server
is left out, missed and cleaned up."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tarfile

import pytest

from tests.conftest import ROOT, UPSTREAM_RESULTS
from tests.langgraph_suite import server, source
from tests.langgraph_suite.run import SUITES, SuiteResult, SuiteRunError, left_out, run_suite
from tests.langgraph_suite.source import Pin, SuiteSourceError
from tests.postgres_server import postgres_off


def run_or_fail(suite: str) -> SuiteResult:
    """The suite's result, or a failure that gives its one-line error once (raised outside the
    handler, so that the error is not shown again as the failure's cause)."""
    try:
        return run_suite(suite)
    except (SuiteSourceError, SuiteRunError) as exc:
        message = str(exc)
    pytest.fail(message, pytrace=False)


@pytest.mark.parametrize("suite", list(SUITES))
def test_the_upstream_suite_passes_with_our_saver(suite: str, request: pytest.FixtureRequest) -> None:
    reason = left_out(suite)
    if reason is not None:
        pytest.skip(reason)
    result = run_or_fail(suite)
    request.config.stash.setdefault(UPSTREAM_RESULTS, []).append(result)
    assert result.counts["passed"] > 0, f"no upstream test ran: {result.summary()} (see {result.log})"
    if result.failed:
        fixed = "".join(f"\n{n}: passes now, remove its entry from KNOWN_FAILURES in expectations.py" for n in result.fixed)
        pytest.fail(f"{result.summary()}; full output in {result.log}\n{result.failures()}{fixed}", pytrace=False)


# -- the pinned sources ---------------------------------------------------------------------


@pytest.fixture
def cache(tmp_path, monkeypatch: pytest.MonkeyPatch):
    """An empty cache of upstream sources, in place of the checkout's."""
    monkeypatch.setattr(source, "CACHE", tmp_path / "cache")
    return tmp_path / "cache"


def _sdist(path, name: str = "pkg-1.0") -> None:
    """A small source distribution: one folder holding a tests/ folder."""
    tree = path.parent / name
    (tree / "tests").mkdir(parents=True)
    (tree / "tests" / "test_x.py").write_text("def test_x(): pass\n")
    with tarfile.open(path, "w:gz") as tar:
        tar.add(tree, arcname=name)
    shutil.rmtree(tree)


def test_a_cached_archive_of_the_pinned_hash_is_extracted_once(cache) -> None:
    cache.mkdir()
    _sdist(cache / "pkg-1.0.tar.gz")
    pin = Pin("pkg", "1.0", "pkg-1.0.tar.gz", source.sha256_of(cache / "pkg-1.0.tar.gz"))
    tree = source.source_tree(pin)
    assert (tree / "tests" / "test_x.py").is_file()
    (cache / "pkg-1.0.tar.gz").unlink()  # the verified tree is used from now on, without the archive
    assert source.source_tree(pin) == tree


def test_an_archive_that_is_not_the_pinned_one_is_refused_and_deleted(cache) -> None:
    cache.mkdir()
    _sdist(cache / "pkg-1.0.tar.gz")
    pin = Pin("pkg", "1.0", "pkg-1.0.tar.gz", "0" * 64)
    with pytest.raises(SuiteSourceError, match="pins.json says 0000") as caught:
        source.source_tree(pin)
    assert "\n" not in str(caught.value)
    assert not (cache / "pkg-1.0.tar.gz").exists() and not pin.tree.exists()


def test_without_network_or_cache_the_error_is_one_line_that_says_what_to_do(cache, monkeypatch) -> None:
    # pip, with no configuration, asks an index on a port where nothing listens.
    monkeypatch.setenv("PIP_CONFIG_FILE", "/dev/null")
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
    monkeypatch.delenv("PIP_FIND_LINKS", raising=False)
    monkeypatch.delenv("PIP_EXTRA_INDEX_URL", raising=False)
    pin = source.load_pins()["langgraph"]
    with pytest.raises(SuiteSourceError) as caught:
        source.source_tree(pin)
    message = str(caught.value)
    assert message.startswith(f"cannot download the sources of langgraph {pin.version}") and "\n" not in message
    assert "connect to the package index and run again" in message
    assert not pin.tree.exists()


def test_an_installed_version_other_than_the_pin_says_how_to_move_the_pin() -> None:
    pin = source.load_pins()["langgraph"]
    other = Pin(pin.name, "0.0.1", pin.sdist, pin.sha256)
    with pytest.raises(SuiteSourceError) as caught:
        source.check_installed(other)
    message = str(caught.value)
    assert f"langgraph {pin.version} is installed but its tests are pinned to 0.0.1" in message
    assert "python -m tests.langgraph_suite.source --pin" in message and "\n" not in message


def test_the_dev_extra_installs_the_pinned_versions() -> None:
    """CI installs `.[dev]`: it must get the versions whose tests are pinned."""
    pyproject = (ROOT / "pyproject.toml").read_text()
    for pin in source.load_pins().values():
        assert f'"{pin.name}=={pin.version}"' in pyproject, f"pin {pin.name}=={pin.version} in pyproject.toml's dev extra"


def test_the_runner_for_developers_refuses_an_unknown_suite() -> None:
    done = subprocess.run([sys.executable, "-m", "tests.langgraph_suite.run", "--suite", "nope"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 2 and "invalid choice: 'nope'" in done.stderr


# -- the PostgreSQL server --------------------------------------------------------------------


def test_without_a_server_the_postgres_suite_fails_saying_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENT_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:9/postgres")  # nothing listens there
    with pytest.raises(SuiteRunError) as caught:
        run_suite("langgraph-postgres")
    message = str(caught.value)
    assert message.startswith("no PostgreSQL server at 127.0.0.1:9 for the langgraph-postgres suite") and "\n" not in message
    assert "set AGENT_TEST_POSTGRES=off to leave it out" in message


def test_with_the_server_off_the_postgres_suite_is_left_out(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENT_TEST_POSTGRES", "off")
    assert left_out("langgraph-postgres") == server.LEFT_OUT and left_out("langgraph") is None
    done = subprocess.run([sys.executable, "-m", "tests.langgraph_suite.run", "--suite", "langgraph-postgres"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0 and done.stderr == f"langgraph-postgres: left out ({server.LEFT_OUT})\n"


@pytest.mark.skipif(postgres_off(), reason="AGENT_TEST_POSTGRES=off leaves PostgreSQL out")
def test_the_runs_database_is_dropped_when_the_run_ends_even_with_a_connection_left_to_it() -> None:
    import psycopg

    from tests.postgres_server import server_url

    def exists(admin: psycopg.Connection, name: str) -> bool:
        return admin.execute("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = %s)", (name,)).fetchone()[0]

    with psycopg.connect(server_url(), autocommit=True) as admin:
        with server.run_database() as env:
            left = psycopg.connect(env["AGENT_SUITE_POSTGRES_DATABASE"])  # as a run stopped in the middle of a test leaves it
            name = left.info.dbname
            assert left.execute("SELECT max(version) FROM agent_schema").fetchone()[0] > 0  # set up by open_database
        left.close()
        assert not exists(admin, name)
