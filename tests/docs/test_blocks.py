"""The README's and docs/*.md's shell and YAML blocks, run or checked as their marker says
(tests/docs/blocks.py lists the markers). A new block without a marker fails here: say how it is
checked, or why it cannot run here."""

from __future__ import annotations

import base64
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.docs.blocks import MODES, REPO, SHELL, YAML, Block, all_blocks, read_blocks
from tests.docs.shell import Sandbox, expectation_failures, printed_failures, run_bash, serving, wait_until_ready
from tests.docs.tokens import sandbox_env

BLOCKS = [block for block in all_blocks() if block.checked]
_EXAMPLE_RULES = [{"name": "loopback", "anonymous": True, "networks": ["127.0.0.0/8"]}]


def test_every_shell_and_yaml_block_says_how_it_is_checked() -> None:
    unmarked = [b.where for b in BLOCKS if b.mode not in MODES]
    assert not unmarked, f"blocks without a <!-- doc-test: MODE --> marker (tests/docs/blocks.py): {unmarked}"
    for block in BLOCKS:
        if block.mode in {"serve", "run"}:
            assert block.lang in SHELL, f"{block.where}: {block.mode} is for shell blocks"
        if block.mode in {"policy", "policy-part", "backend", "values", "excerpt"}:
            assert block.lang in YAML, f"{block.where}: {block.mode} is for YAML blocks"
        if block.mode == "not-here":
            assert block.options.get("reason"), f"{block.where}: not-here needs reason=\"...\""


def _prepare(block: Block, root: Path) -> Sandbox:
    """A sandbox with the files the page's earlier blocks saved (``as=FILE``)."""
    sandbox = Sandbox.make(root, **sandbox_env(root))
    for other in read_blocks(block.doc):
        # A saved file (a test vector's body) is data wherever it stands; a policy saved for the
        # commands after it is what the page has said so far.
        if "as" in other.options and (other.mode == "save" or other.line < block.line):
            text = other.text.removesuffix("\n") if other.mode == "save" else other.text
            (root / other.options["as"]).write_text(text, encoding="utf-8")
    return sandbox


def _check_config(sandbox: Sandbox, text: str, name: str = "doc-policy.yaml") -> subprocess.CompletedProcess[str]:
    path = sandbox.root / name
    path.write_text(text)
    return subprocess.run([sys.executable, "-m", "gateway", "check-config", str(path)], cwd=sandbox.root,
                          env=sandbox.env, capture_output=True, text=True, timeout=60, check=False)


def _policy_of(block: Block) -> dict[str, Any]:
    data = yaml.safe_load(block.text)
    if block.mode == "backend":
        backend = data.get("backend", data)
        return {"version": 1, "datasets": {"example": {"backend": backend, "rules": _EXAMPLE_RULES}}}
    if block.mode == "policy-part":
        example = {"example": {"backend": {"kind": "local", "path": "data"}, "rules": _EXAMPLE_RULES}}
        return {"version": 1, "datasets": example, **data}
    return dict(data)


def _appears(node: object, fragment: object) -> bool:
    return _contains(node, fragment) or (
        isinstance(node, dict) and any(_appears(v, fragment) for v in node.values())) or (
        isinstance(node, list) and any(_appears(v, fragment) for v in node))


def _contains(node: object, fragment: object) -> bool:
    if isinstance(fragment, dict):
        return isinstance(node, dict) and all(k in node and _contains(node[k], v) for k, v in fragment.items())
    if isinstance(fragment, list):
        return isinstance(node, list) and all(any(_contains(n, f) for n in node) for f in fragment)
    return node == fragment


@pytest.mark.parametrize("block", [b for b in BLOCKS if b.mode in {"serve", "run"}], ids=lambda b: b.where)
def test_shell_block_runs_as_written(block: Block, tmp_path: Path) -> None:
    sandbox = _prepare(block, tmp_path)
    if block.mode == "run":
        ran = run_bash(block.text, sandbox)
        assert ran.returncode == 0, f"{block.where}:\n{ran.stdout[-2000:]}\n{ran.stderr[-2000:]}"
        failures = expectation_failures(block.text, ran.calls) + printed_failures(block.text, ran.stdout)
        assert not failures, f"{block.where}: {failures}"
        return
    with serving(sandbox, list(block.args)) as port:
        wait_until_ready(port)
        maps = {"127.0.0.1:8080": f"127.0.0.1:{port}", "localhost:8080": f"127.0.0.1:{port}"}
        ran = run_bash(block.text, sandbox, maps)
    assert ran.returncode == 0, f"{block.where}:\n{ran.stdout[-2000:]}\n{ran.stderr[-2000:]}"
    failures = expectation_failures(block.text, ran.calls)
    assert not failures, f"{block.where}: {failures}"


@pytest.mark.parametrize("block", [b for b in BLOCKS if b.mode in {"policy", "policy-part", "backend"}],
                         ids=lambda b: b.where)
def test_policy_block_passes_check_config(block: Block, tmp_path: Path) -> None:
    sandbox = _prepare(block, tmp_path)
    done = _check_config(sandbox, yaml.safe_dump(_policy_of(block), sort_keys=False))
    assert done.returncode == 0, f"{block.where}: check-config refused it:\n{done.stderr}"


@pytest.mark.parametrize("block", [b for b in BLOCKS if b.mode == "excerpt"], ids=lambda b: b.where)
def test_excerpt_appears_in_its_file(block: Block) -> None:
    source = REPO / block.options["of"]
    documents = list(yaml.safe_load_all(source.read_text()))
    fragment = yaml.safe_load(block.text)
    assert any(_appears(doc, fragment) for doc in documents), f"{block.where}: not found as written in {source}"


def _fill(node: Any) -> Any:
    """Each ``...`` placeholder replaced by a value shaped like the secret it stands for."""
    if node == "...":
        return base64.b64encode(secrets.token_bytes(36)).decode()
    if isinstance(node, dict):
        return {k: _fill(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_fill(v) for v in node]
    return node


@pytest.mark.parametrize("block", [b for b in BLOCKS if b.mode == "values"], ids=lambda b: b.where)
def test_values_block_renders_with_the_chart(block: Block, tmp_path: Path) -> None:
    from tests.deploy.helm import helm_binary, template

    values = tmp_path / "values.yaml"
    data = yaml.safe_load(block.text)
    if block.options.get("fill") == "secrets":
        data = _fill(data)  # the page writes `...` where your secrets go
    values.write_text(yaml.safe_dump(data))
    rendered = template(helm_binary(), "-f", str(values), check=False)
    assert rendered.returncode == 0, f"{block.where}: helm template refused it:\n{rendered.stderr}"
