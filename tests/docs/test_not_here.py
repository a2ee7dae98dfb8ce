"""The docs' blocks that cannot run on a test machine (a cluster, a cloud, Docker, a browser's trust
store), checked as far as they can be here: every ``gateway`` command parses with the real CLI,
every ``helm`` command renders the chart with a real helm, every ``make`` target exists, every
``docker`` command names a service, an entrypoint or a file the project really has. A block whose
requests another test runs (``checked-by=``) must be named by that test."""

from __future__ import annotations

import contextlib
import io
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.cli import build_parser
from tests.docs.blocks import REPO, Block, all_blocks, commands
from tests.support import need

NOT_HERE = [b for b in all_blocks() if b.checked and b.mode == "not-here"]
# helm flags of install/upgrade that `helm template` does not take.
_UPGRADE_ONLY = {"--reuse-values", "--install", "--atomic", "--wait"}


def _gateway(words: list[str], where: str) -> None:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            build_parser().parse_args(words)
        except SystemExit as exc:
            assert exc.code == 0, f"{where}: `gateway {' '.join(words)}` does not parse: {err.getvalue().strip()}"


_VALUE_FLAGS = {"-n", "--namespace", "-f", "--values", "--set", "--set-file", "--set-string", "--show-only", "-s",
                "--version", "--kube-version"}


def _helm(words: list[str], where: str, folder: Path) -> None:
    """``helm install|upgrade|template`` rendered as ``helm template``, with the files it names made
    up in ``folder`` (``my-values.yaml`` empty, ``policy.yaml`` the compose trial's)."""
    from tests.deploy.helm import helm, helm_binary

    verb, rest = words[0], words[1:]
    assert verb in {"install", "upgrade", "template"}, f"{where}: helm {verb} is not checked here"
    (folder / "my-values.yaml").write_text("{}\n")
    (folder / "policy.yaml").write_text((REPO / "deploy/compose/policy/policy.yaml").read_text())
    positional, flags = [], []
    while rest:
        word = rest.pop(0)
        if word in _UPGRADE_ONLY:
            continue
        if word in _VALUE_FLAGS and rest:
            value = rest.pop(0)
            if "=" in value and word == "--set-file":
                key, _, file = value.partition("=")
                value = f"{key}={folder / file}"
            elif (folder / value).is_file():
                value = str(folder / value)
            flags += [word, value]
        elif word.startswith("-"):
            flags.append(word)
        else:
            positional.append(word)
    name, chart = positional
    chart_path = str(REPO / chart) if (REPO / chart).is_dir() else chart
    done = helm(helm_binary(), "template", name, chart_path, "--kube-version", "1.30.0", *flags, check=False)
    assert done.returncode == 0, f"{where}: helm {' '.join(words)} would not render:\n{done.stderr}"


def _make(words: list[str], where: str) -> None:
    need(shutil.which("make") is not None, "make is needed to check the docs' make targets")
    targets = [w for w in words if not w.startswith("-")]
    done = subprocess.run(["make", "-n", "-C", str(REPO), *targets], capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.returncode == 0, f"{where}: make {' '.join(words)}: {done.stderr.strip()}"


def _docker(words: list[str], where: str) -> None:
    compose: dict[str, Any] = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    dockerfile = (REPO / "Dockerfile").read_text()
    if words[:1] == ["compose"]:
        named = [w for w in words[2:] if not w.startswith("-")]
        assert set(named) <= set(compose["services"]), f"{where}: docker {' '.join(words)}: no such service"
        return
    assert words[:1] == ["run"], f"{where}: docker {words[:1]} is not checked here"
    rest = words[1:]
    entrypoint = None
    while rest and rest[0].startswith("-"):
        flag = rest.pop(0)
        if flag == "--entrypoint":
            entrypoint = rest.pop(0)
    image, *args = rest
    assert image == compose["services"]["gateway"]["image"].split(":")[0] or image == "url-signing-gateway"
    if entrypoint is None:
        _gateway(args, where)  # ENTRYPOINT ["gateway"]
        assert 'ENTRYPOINT ["gateway"]' in dockerfile
    else:
        for path in args:
            assert path in dockerfile, f"{where}: the Dockerfile puts nothing at {path}"


@pytest.mark.parametrize("block", NOT_HERE, ids=lambda b: b.where)
def test_what_can_be_checked_here_is(block: Block, tmp_path: Path) -> None:
    if block.lang not in {"sh", "bash", "shell"}:
        return  # YAML that is not here: its checked-by test reads it
    for words in commands(block.text):
        program = Path(words[0]).name
        if program == "gateway":
            _gateway(words[1:], block.where)
        elif program == "helm":
            _helm(words[1:], block.where, tmp_path)
        elif program == "make":
            _make(words[1:], block.where)
        elif program == "docker":
            _docker(words[1:], block.where)


@pytest.mark.parametrize("block", [b for b in NOT_HERE if "checked-by" in b.options], ids=lambda b: b.where)
def test_the_test_that_runs_it_names_it(block: Block) -> None:
    test = REPO / block.options["checked-by"]
    assert test.is_file(), f"{block.where}: checked-by {test} does not exist"
    assert "id" in block.options, f"{block.where}: give the block an id= that {test.name} reads it by"
    assert f'"{block.options["id"]}"' in test.read_text(), f"{test} does not read block {block.options['id']}"
