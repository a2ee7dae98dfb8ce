"""The Dockerfile and .dockerignore, checked statically (no Docker daemon runs here)."""

from __future__ import annotations

import fnmatch
import json
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"
BUILD_TOOLS = re.compile(r"\b(gcc|g\+\+|clang|build-essential|make|cmake|cc|libc6?-dev|python3?-dev|rustc|cargo)\b")


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]


def parse(text: str) -> tuple[dict[str, str], list[Stage]]:
    """Instructions with continuations joined and comments dropped, grouped by stage."""
    joined = re.sub(r"\\\n", " ", "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#")))
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in joined.splitlines():
        if not line.strip():
            continue
        keyword, _, rest = line.strip().partition(" ")
        keyword, rest = keyword.upper(), rest.strip()
        if keyword == "FROM":
            parts = rest.split()
            base = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), parts[0])
            name = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else None
            stages.append(Stage(base, name))
        elif not stages and keyword == "ARG":
            key, _, value = rest.partition("=")
            args[key] = value
        else:
            stages[-1].instructions.append((keyword, rest))
    return args, stages


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    return parse(DOCKERFILE.read_text())[1]


def env_of(stage: Stage) -> dict[str, str]:
    env: dict[str, str] = {}
    for args in stage.all("ENV"):
        env.update(dict(re.findall(r"(\w+)=(\S+)", args)))
    return env


def test_multi_stage_on_slim_python_311(stages: list[Stage]) -> None:
    assert len(stages) >= 2
    for stage in stages:
        assert re.fullmatch(r"python:3\.11-slim(-\w+)?", stage.base), stage.base
    final = stages[-1]
    copies = [a for a in final.all("COPY") if a.startswith("--from=")]
    builders = {s.name for s in stages[:-1]}
    assert copies and all(a.split()[0].removeprefix("--from=") in builders for a in copies)


def test_no_build_tools_in_the_final_stage(stages: list[Stage]) -> None:
    final = stages[-1]
    for run in final.all("RUN"):
        assert not BUILD_TOOLS.search(run), run
        assert "apt-get install" not in run and "pip install" not in run, run
    # The check can see build tools when they are there.
    assert BUILD_TOOLS.search("apt-get install -y build-essential")


def test_the_build_installs_the_lock_and_nothing_else(stages: list[Stage]) -> None:
    """The only install is scripts/install-image (uv.lock, hashes, no resolver); no bare pip/uv install."""
    build_runs = [run for stage in stages[:-1] for run in stage.all("RUN")]
    joined = " ".join(build_runs)
    assert re.search(r"scripts/install-image /opt/venv \"?\$\{?REVISION", joined), joined
    assert "scripts/sbom /opt/venv" in joined
    assert not re.search(r"\bpip3? install\b|\buv (pip install|sync|add)\b|apt-get install", joined), joined
    copies = " ".join(stages[0].all("COPY"))
    assert "uv.lock" in copies and "scripts/uv-requirements.txt" in copies
    # The runtime stage carries the SBOM at the documented path.
    final_copies = stages[-1].all("COPY")
    assert any(c.endswith(" /usr/share/doc/url-signing-gateway/sbom.cdx.json") for c in final_copies), final_copies
    assert "/usr/share/doc/url-signing-gateway/sbom.cdx.json" in (REPO / "docs" / "dependencies.md").read_text()


def test_runs_as_a_numeric_non_root_user(stages: list[Stage]) -> None:
    [user] = stages[-1].all("USER")
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) > 0
    assert not gid or (gid.isdigit() and int(gid) > 0)
    # The chart and compose file run as the same user.
    chart_values = (REPO / "deploy/helm/gateway/values.yaml").read_text()
    assert f"runAsUser: {uid}" in chart_values


def test_read_only_root_filesystem_ready(stages: list[Stage]) -> None:
    env = env_of(stages[-1])
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert env["HOME"] == "/tmp" and env["TMPDIR"] == "/tmp"


def test_listens_on_all_interfaces_on_the_exposed_port(stages: list[Stage]) -> None:
    final = stages[-1]
    env = env_of(final)
    assert env["GATEWAY_HOST"] == "0.0.0.0"
    assert final.all("EXPOSE") == ["8080"] == [env["GATEWAY_PORT"]]
    assert env["GATEWAY_WORKERS"].isdigit()


def test_healthcheck_uses_python_against_healthz(stages: list[Stage]) -> None:
    [check] = stages[-1].all("HEALTHCHECK")
    options, _, command = check.partition("CMD")
    assert "--interval" in options and "--timeout" in options
    argv = json.loads(command)
    assert argv[:2] == ["python", "-c"] and "/healthz" in argv[2] and "urllib" in argv[2]
    compile(argv[2], "HEALTHCHECK", "exec")


def test_exec_form_entrypoint_runs_the_console_script(stages: list[Stage]) -> None:
    final = stages[-1]
    [entrypoint] = final.all("ENTRYPOINT")
    [cmd] = final.all("CMD")
    # JSON arrays (exec form): no shell in between, so SIGTERM reaches the gateway as PID 1.
    entry, command = json.loads(entrypoint), json.loads(cmd)
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert entry == ["gateway"] and "gateway" in scripts
    assert command == ["serve"]


def test_oci_labels(stages: list[Stage]) -> None:
    labels = " ".join(stages[-1].all("LABEL"))
    for key in ("title", "description", "licenses", "version", "revision", "created"):
        assert f"org.opencontainers.image.{key}=" in labels


def _ignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last matching pattern wins; a pattern also matches everything below it."""
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.removeprefix("!").rstrip("/")
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(fnmatch.fnmatchcase(p, pattern) or fnmatch.fnmatchcase(p, pattern.removeprefix("**/"))
               for p in prefixes) or (pattern.startswith("**/") and any(
                   fnmatch.fnmatchcase(part, pattern.removeprefix("**/")) for part in parts)):
            ignored = not negate
    return ignored


def test_dockerignore_keeps_the_context_to_what_is_copied(stages: list[Stage]) -> None:
    patterns = [line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.lstrip().startswith("#")]
    for private in (".git/config", ".venv/bin/python", ".cache/helm/2.2.2/helm", "tests/conftest.py",
                    "gateway/__pycache__/app.cpython-311.pyc", "data/sample.png", ".env"):
        assert _ignored(private, patterns), private
    # Every source the build COPYs from the context exists and is not ignored.
    for stage in stages:
        for args in stage.all("COPY"):
            if args.startswith("--from="):
                continue
            *sources, _ = [a for a in args.split() if not a.startswith("--")]
            for source in sources:
                assert (REPO / source).exists(), source
                probe = f"{source}/__init__.py" if (REPO / source).is_dir() else source
                assert not _ignored(probe, patterns), source
