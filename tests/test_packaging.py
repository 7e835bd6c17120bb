"""The package a host installs: the built wheel's files and metadata, its floors equal to
tests/floors.txt (which `make floors` tests), and a build that warns of nothing."""

from __future__ import annotations

import dataclasses
import email.parser
import re
import shutil
import subprocess
import sys
import zipfile
from email.message import Message
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

import flask_token_auth

REPOSITORY = Path(__file__).resolve().parent.parent
FLOORS = REPOSITORY / "tests" / "floors.txt"
CHANGELOG = REPOSITORY / "CHANGELOG.md"
# What a wheel build reads from the repository.
BUILD_INPUTS = ("pyproject.toml", "README.md", "LICENSE")
PACKAGE = "flask_token_auth"
PACKAGE_DATA = {
    f"{PACKAGE}/py.typed",
    f"{PACKAGE}/static/client.js",
    f"{PACKAGE}/static/client.d.ts",
    f"{PACKAGE}/static/react.js",
    f"{PACKAGE}/static/react.d.ts",
}
EXTRAS = {"postgres", "mysql", "redis", "client", "metrics", "server", "bcrypt"}
BUILD_TIMEOUT_SECONDS = 300


@dataclasses.dataclass(frozen=True)
class BuiltWheel:
    source: Path
    files: frozenset[str]
    metadata: Message
    licence: str
    build_errors: str


def floor_pins() -> dict[str, str]:
    """tests/floors.txt as {canonical name: pinned version}."""
    pins: dict[str, str] = {}
    for line in FLOORS.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            requirement = Requirement(line)
            (specifier,) = requirement.specifier
            assert specifier.operator == "==", line
            pins[canonicalize_name(requirement.name)] = specifier.version
    return pins


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> BuiltWheel:
    """The wheel built from a copy of the repository's build inputs (no stale `build/` of the
    checkout can leak into it), offline, with the dev group's setuptools."""
    source = tmp_path_factory.mktemp("source")
    for name in BUILD_INPUTS:
        shutil.copy(REPOSITORY / name, source / name)
    shutil.copytree(
        REPOSITORY / PACKAGE, source / PACKAGE, ignore=shutil.ignore_patterns("__pycache__")
    )
    dist = tmp_path_factory.mktemp("dist")
    result = subprocess.run(
        [
            *(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation"),
            *("--no-index", "--wheel-dir", str(dist), str(source)),
        ],
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT_SECONDS,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    (built,) = dist.glob("*.whl")
    with zipfile.ZipFile(built) as archive:
        files = frozenset(archive.namelist())
        (metadata,) = (name for name in files if name.endswith(".dist-info/METADATA"))
        (licence,) = (name for name in files if name.endswith(".dist-info/licenses/LICENSE"))
        return BuiltWheel(
            source=source,
            files=files,
            metadata=email.parser.Parser().parsestr(archive.read(metadata).decode()),
            licence=archive.read(licence).decode(),
            build_errors=result.stderr,
        )


@pytest.mark.slow
def test_the_build_warns_of_nothing(wheel: BuiltWheel) -> None:
    """setuptools' warnings (`!!` blocks) reach pip's stderr; a clean build has none."""
    assert not re.search(r"warning|!!", wheel.build_errors, flags=re.IGNORECASE), wheel.build_errors


@pytest.mark.slow
def test_the_wheel_ships_the_typed_extension_and_its_browser_module_alone(
    wheel: BuiltWheel,
) -> None:
    modules = {
        path.relative_to(wheel.source).as_posix() for path in (wheel.source / PACKAGE).rglob("*.py")
    }
    shipped = {name for name in wheel.files if ".dist-info/" not in name}

    assert shipped == modules | PACKAGE_DATA


@pytest.mark.slow
def test_the_version_is_the_packages_own(wheel: BuiltWheel) -> None:
    assert wheel.metadata["Name"] == "flask-token-auth"
    assert wheel.metadata["Version"] == flask_token_auth.__version__


@pytest.mark.slow
def test_the_licence_is_mit(wheel: BuiltWheel) -> None:
    assert wheel.metadata["License-Expression"] == "MIT"
    assert wheel.metadata.get_all("License-File") == ["LICENSE"]
    assert wheel.licence.startswith("MIT License\n\nCopyright (c) flask-token-auth contributors\n")
    # PEP 639: the expression replaces `License ::` classifiers, which setuptools refuses beside it.
    assert not [name for name in wheel.metadata.get_all("Classifier", []) if "License ::" in name]


@pytest.mark.slow
def test_the_classifiers_say_flask_typed_security_and_the_pythons(wheel: BuiltWheel) -> None:
    classifiers = set(wheel.metadata.get_all("Classifier", []))

    assert {
        "Framework :: Flask",
        "Programming Language :: Python :: 3 :: Only",
        "Programming Language :: Python :: 3.11",
        "Topic :: Security",
        "Typing :: Typed",
    } <= classifiers
    assert wheel.metadata["Requires-Python"] == ">=3.11"


@pytest.mark.slow
def test_the_extras_are_optional_features_and_no_dev_tools(wheel: BuiltWheel) -> None:
    assert set(wheel.metadata.get_all("Provides-Extra", [])) == EXTRAS


@pytest.mark.slow
def test_every_requirement_floor_is_the_pin_make_floors_tests(wheel: BuiltWheel) -> None:
    """Each `Requires-Dist`, extras included, is `>=` the version tests/floors.txt pins: the
    floors declared are the ones tested."""
    pins = floor_pins()
    requirements = [Requirement(line) for line in wheel.metadata.get_all("Requires-Dist", [])]
    floors = {
        canonicalize_name(requirement.name): [
            specifier.version for specifier in requirement.specifier if specifier.operator == ">="
        ]
        for requirement in requirements
    }

    assert floors == {name: [pins.get(name)] for name in floors}


def test_the_changelog_has_an_entry_for_this_version() -> None:
    assert f"\n## [{flask_token_auth.__version__}]" in CHANGELOG.read_text()
