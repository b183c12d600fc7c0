"""LangGraph's own checkpointer tests (pregel, async pregel, time travel, interrupts, subgraphs,
the functional API) and langgraph-checkpoint-sqlite's saver tests, run against our saver as the
project opens it, each suite in a pytest process of its own (tests/langgraph_suite); and how the
pinned sources behave when they are tampered with, unreachable or of another version."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tarfile

import pytest

from tests.conftest import ROOT, UPSTREAM_RESULTS
from tests.langgraph_suite import source
from tests.langgraph_suite.run import SUITES, SuiteRunError, run_suite
from tests.langgraph_suite.source import Pin, SuiteSourceError


@pytest.mark.parametrize("suite", list(SUITES))
def test_the_upstream_suite_passes_with_our_saver(suite: str, request: pytest.FixtureRequest) -> None:
    try:
        result = run_suite(suite)
    except (SuiteSourceError, SuiteRunError) as exc:
        pytest.fail(str(exc), pytrace=False)
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
