"""The locks are what gets installed: uv.lock for Python (a fresh clone, the image, the SBOM) and
package-lock.json for the Node programs the tests run (docs/dependencies.md)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from tests.support import REPO, node_package

UV = REPO / "scripts" / "uv"
LOCK = tomllib.loads((REPO / "uv.lock").read_text())
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
ENV = {**os.environ, "UV_PYTHON_DOWNLOADS": "never"}


def run(*argv: str | Path, cwd: Path = REPO, env: dict[str, str] | None = None,
        timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in argv], cwd=cwd, env=env or ENV, capture_output=True, text=True,
                          timeout=timeout, check=False)


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def locked_runtime_set() -> dict[str, str]:
    """name -> version of what the image installs, read from uv.lock by uv itself."""
    result = run(UV, "export", "--frozen", "--no-dev", "--no-emit-project", "--no-header", "--no-hashes",
                 "--format", "requirements-txt")
    assert result.returncode == 0, result.stderr
    pins = {}
    for line in result.stdout.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        requirement = Requirement(line)
        if requirement.marker is None or requirement.marker.evaluate():  # for this interpreter
            [pin] = requirement.specifier
            pins[normalize(requirement.name)] = pin.version
    return pins


def test_uv_lock_matches_pyproject() -> None:
    result = run(UV, "lock", "--check", "--offline")
    assert result.returncode == 0, result.stderr


def test_a_lock_that_disagrees_with_pyproject_fails_the_check(tmp_path: Path) -> None:
    for name in ("pyproject.toml", "uv.lock", "README.md"):
        shutil.copy(REPO / name, tmp_path / name)
    pyproject = tmp_path / "pyproject.toml"
    # A dependency removed: the lock holds a package pyproject no longer asks for. (Online: deciding
    # that a lock is stale resolves every split of the lock, which a fresh cache cannot do offline.)
    pyproject.write_text(pyproject.read_text().replace('    "prometheus-client>=0.20",\n', ""))
    result = run(UV, "lock", "--check", cwd=tmp_path)
    assert result.returncode != 0
    assert "needs to be updated" in result.stderr


def test_every_locked_package_is_pinned_with_hashes() -> None:
    packages = LOCK["package"]
    assert len(packages) > 100  # runtime and dev, direct and transitive
    for package in packages:
        if package["source"].get("editable") == ".":  # the project itself
            continue
        assert package["source"] == {"registry": "https://pypi.org/simple"}, package["name"]
        files = package.get("wheels", []) + ([package["sdist"]] if "sdist" in package else [])
        assert files, package["name"]
        assert all(re.fullmatch(r"sha256:[0-9a-f]{64}", f["hash"]) for f in files), package["name"]


def test_pyproject_keeps_ranges_and_the_lock_holds_the_pins() -> None:
    requirements = PYPROJECT["project"]["dependencies"] + [
        r for r in PYPROJECT["dependency-groups"]["dev"] if isinstance(r, str)]
    assert not [r for r in requirements if "==" in r]
    locked = {normalize(p["name"]) for p in LOCK["package"]}
    for requirement in requirements:
        name = normalize(re.split(r"[\[<>=!~ ;]", requirement, maxsplit=1)[0])
        assert name in locked, requirement


@pytest.fixture(scope="module")
def image_venv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The runtime environment as the image's build stage makes it (scripts/install-image)."""
    venv = tmp_path_factory.mktemp("image") / "venv"
    result = run(REPO / "scripts" / "install-image", venv, "0123abcd")
    assert result.returncode == 0, result.stdout + result.stderr
    yield venv


def test_the_image_holds_exactly_the_locked_runtime_set(image_venv: Path) -> None:
    listed = run(UV, "pip", "list", "--python", image_venv, "--format", "json")
    assert listed.returncode == 0, listed.stderr
    installed = {normalize(p["name"]): p["version"] for p in json.loads(listed.stdout)}
    gateway = installed.pop("url-signing-gateway")
    assert gateway == PYPROJECT["project"]["version"]
    runtime = locked_runtime_set()
    assert installed == runtime
    # No dev tool and no build tool reached it.
    assert not {"pytest", "mypy", "ruff", "pip", "setuptools", "cyclonedx-bom"} & installed.keys()


def test_the_image_says_its_version_and_revision(image_venv: Path, tmp_path: Path) -> None:
    result = run(image_venv / "bin" / "gateway", "--version", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"gateway {PYPROJECT['project']['version']} (revision 0123abcd)"


def test_a_wrong_hash_in_the_lock_stops_the_image_install(tmp_path: Path) -> None:
    for name in ("pyproject.toml", "uv.lock", "README.md"):
        shutil.copy(REPO / name, tmp_path / name)
    shutil.copytree(REPO / "gateway", tmp_path / "gateway", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "scripts", tmp_path / "scripts")
    lock = tmp_path / "uv.lock"
    text = lock.read_text()
    # six is a small runtime dependency (through python-dateutil); give every file of it a wrong hash.
    block = re.search(r'\[\[package\]\]\nname = "six"\n.*?(?=\n\[\[package\]\])', text, re.S)
    assert block is not None
    lock.write_text(text.replace(block.group(0), re.sub(r"sha256:[0-9a-f]{64}", "sha256:" + "0" * 64,
                                                          block.group(0))))
    result = run(tmp_path / "scripts" / "install-image", tmp_path / "venv", env={**ENV, "UV": str(UV)})
    assert result.returncode != 0
    assert "hash" in result.stderr.lower() and "six" in result.stderr, result.stderr


def test_the_sbom_is_cyclonedx_of_the_runtime_set(image_venv: Path, tmp_path: Path) -> None:
    out = tmp_path / "sbom.cdx.json"
    result = run(REPO / "scripts" / "sbom", image_venv, out)
    assert result.returncode == 0, result.stderr
    sbom = json.loads(out.read_text())
    assert sbom["bomFormat"] == "CycloneDX" and sbom["specVersion"] == "1.6"
    root = sbom["metadata"]["component"]
    assert (root["name"], root["version"]) == ("url-signing-gateway", PYPROJECT["project"]["version"])
    components = {normalize(c["name"]): c["version"] for c in sbom["components"]}
    components.pop("url-signing-gateway", None)
    assert components == locked_runtime_set()
    for component in sbom["components"]:
        assert component["purl"] == f"pkg:pypi/{normalize(component['name'])}@{component['version']}"


def test_node_tools_come_from_package_lock() -> None:
    manifest = json.loads((REPO / "package.json").read_text())
    lock = json.loads((REPO / "package-lock.json").read_text())
    assert lock["lockfileVersion"] >= 2
    assert lock["packages"][""]["devDependencies"] == manifest["devDependencies"]
    for path, entry in lock["packages"].items():
        if path and not entry.get("inBundle"):  # a bundled one is inside its parent's checked tarball
            assert re.fullmatch(r"sha512-[A-Za-z0-9+/=]+", entry.get("integrity", "")), path
    for name, spec in manifest["devDependencies"].items():
        folder = node_package(name)
        installed = json.loads((folder / "package.json").read_text())["version"]
        assert installed == lock["packages"][f"node_modules/{name}"]["version"], name
        assert spec.lstrip("^~") <= installed or spec == installed
    # Nothing installs a Node package by name at test time: only scripts/npm-ci, with `npm ci`.
    assert "npm ci " in (REPO / "scripts" / "npm-ci").read_text()
    by_name = re.compile(r"""\bnpm\b["'\]]?,?\s*["']?(install|pack|exec|i)\b|\bnpx\s""")
    assert by_name.search('[npm, "install", "x"]') and by_name.search("npm install x")
    for source in [*REPO.glob("tests/**/*.py"), *REPO.glob("bench/**/*.py"), *REPO.glob("scripts/*")]:
        if source.name == Path(__file__).name:
            continue
        assert not by_name.search(source.read_text()), source


def test_version_of_a_checkout_names_its_git_revision() -> None:
    head = run("git", "rev-parse", "HEAD")
    if head.returncode != 0:
        pytest.skip("not a git checkout")
    result = run(sys.executable, "-m", "gateway", "--version")
    assert result.returncode == 0, result.stderr
    match = re.fullmatch(r"gateway (\S+) \(revision ([0-9a-f]{40})(\+dirty)?\)", result.stdout.strip())
    assert match, result.stdout
    assert match.group(1) == metadata.version("url-signing-gateway")
    assert match.group(2) == head.stdout.strip()


def test_the_test_command_installs_from_the_locks() -> None:
    script = (REPO / "scripts" / "test").read_text()
    assert "scripts/uv lock --check" in script and "scripts/uv sync --locked" in script
    assert "scripts/npm-ci" in script
    makefile = (REPO / "Makefile").read_text()
    for target in ("upgrade", "test-latest", "sbom", "lock"):
        assert re.search(rf"^{target}:", makefile, re.M), target
    assert re.search(r"^upgrade:\n(\t.*\n)*\t\$\(UV\) lock --upgrade\n(\t.*\n)*\t\./scripts/test\n", makefile, re.M)
    assert (REPO / ".ci" / "run").read_text().rstrip().endswith("exec make test")
