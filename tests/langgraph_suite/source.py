"""The upstream test sources: the source distributions of exactly the installed `langgraph` and
`langgraph-checkpoint-sqlite` (their wheels ship no tests), pinned by version and sha256 in
pins.json, downloaded once with pip into a git-ignored cache in the checkout and extracted there.

To move to new versions (after upgrading the packages):

    python -m tests.langgraph_suite.source --pin

downloads the installed versions' sources, hashes them and records them in pins.json; then set
the same versions in pyproject.toml's dev extra, so that CI installs what the tests come from.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
PINS = HERE / "pins.json"
CACHE = ROOT / ".langgraph-suite"
PIN_COMMAND = "python -m tests.langgraph_suite.source --pin"


class SuiteSourceError(Exception):
    """The pinned sources cannot be had: the message is one line that says what to do."""


@dataclass(frozen=True)
class Pin:
    """One source distribution whose tests run here."""

    name: str
    version: str
    sdist: str
    sha256: str

    @property
    def tree(self) -> Path:
        """Where its extracted sources live in the cache."""
        return CACHE / f"{self.name}-{self.version}"


def load_pins() -> dict[str, Pin]:
    return {name: Pin(name=name, **fields) for name, fields in json.loads(PINS.read_text()).items()}


def installed_version(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def check_installed(pin: Pin) -> None:
    """The tests must come from the version that runs them."""
    installed = installed_version(pin.name)
    if installed != pin.version:
        raise SuiteSourceError(
            f"{pin.name} {installed or '(not installed)'} is installed but its tests are pinned to {pin.version}: "
            f"install {pin.name}=={pin.version} (pip install -e '.[dev]'), or to move the pin run `{PIN_COMMAND}` "
            "and set the same version in pyproject.toml's dev extra"
        )


def source_tree(pin: Pin) -> Path:
    """The extracted sources of `pin`, downloaded and verified on first use."""
    marker = pin.tree / ".sha256"
    if marker.is_file() and marker.read_text() == pin.sha256:
        return pin.tree
    archive = CACHE / pin.sdist
    if not archive.is_file():
        archive = _download(pin.name, pin.version)
    _verify(pin, archive)
    _extract(archive, pin.tree)
    marker.write_text(pin.sha256)
    return pin.tree


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _verify(pin: Pin, archive: Path) -> None:
    found = sha256_of(archive)
    if found != pin.sha256:
        archive.unlink()  # a bad copy is not kept: the next run downloads again
        raise SuiteSourceError(
            f"{archive.name} has sha256 {found}, pins.json says {pin.sha256}: the download is not the pinned "
            f"release; it was deleted, run again (if the pin itself is wrong, `{PIN_COMMAND}`)"
        )


def _download(name: str, version_: str) -> Path:
    """Fetch the source distribution with pip into the cache (atomically: a partial download is never used)."""
    CACHE.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
        # --no-binary for this package only: its build backend may come as a wheel.
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", name,
                   "--timeout", "30", "--retries", "2", "--dest", tmp, f"{name}=={version_}"]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True)
        fetched = sorted(Path(tmp).glob("*.tar.gz"))
        if done.returncode != 0 or len(fetched) != 1:
            raise SuiteSourceError(
                f"cannot download the sources of {name} {version_} ({_pip_error(done.stderr)}); they are needed once, "
                f"then kept in {CACHE.name}/: connect to the package index and run again"
            )
        archive = CACHE / fetched[0].name
        fetched[0].replace(archive)
        return archive


def _pip_error(stderr: str) -> str:
    errors = [line.removeprefix("ERROR: ") for line in stderr.splitlines() if line.startswith("ERROR:")]
    return errors[-1] if errors else "pip failed"


def _extract(archive: Path, tree: Path) -> None:
    """Extract next to the tree, then swap it in, so an interrupted extraction leaves no half tree."""
    with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
        with tarfile.open(archive) as tar:
            tar.extractall(tmp, filter="data")
        (top,) = Path(tmp).iterdir()  # an sdist holds one directory, NAME-VERSION
        if tree.exists():
            shutil.rmtree(tree)
        top.replace(tree)


def pin_installed() -> dict[str, Pin]:
    """Download, hash and record the sources of the installed versions; returns the new pins."""
    pins = {}
    for name in load_pins():
        installed = installed_version(name)
        if installed is None:
            raise SuiteSourceError(f"{name} is not installed: install the project with pip install -e '.[dev]' first")
        archive = _download(name, installed)
        pins[name] = Pin(name=name, version=installed, sdist=archive.name, sha256=sha256_of(archive))
    fields = {name: {"version": p.version, "sdist": p.sdist, "sha256": p.sha256} for name, p in pins.items()}
    PINS.write_text(json.dumps(fields, indent=2) + "\n")
    return pins


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Fetch, or re-pin, the upstream test sources.")
    parser.add_argument("--pin", action="store_true", help="record the installed versions' sources in pins.json")
    args = parser.parse_args(argv)
    try:
        if args.pin:
            for pin in pin_installed().values():
                print(f"pinned {pin.name} {pin.version} sha256 {pin.sha256}")
            print("now set the same versions in pyproject.toml's dev extra")
        else:
            for pin in load_pins().values():
                print(source_tree(pin))
    except SuiteSourceError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
