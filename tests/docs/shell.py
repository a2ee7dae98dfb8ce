"""Running the docs' shell blocks as a reader would: bash in a sandbox folder, the project's
``gateway`` on PATH, a real ``gateway serve`` where the block needs one, and the real curl.

The one liberty taken: the documented addresses (``127.0.0.1:8080``, and what a test maps) are free
ports here. ``curl`` on the sandbox's PATH is a shim that calls the real curl with ``--connect-to``,
so the URL and the ``Host`` header stay exactly as documented, and records each answer (status,
``Location``, body) so that the comments on the lines can be checked.
"""

from __future__ import annotations

import ast
import base64
import contextlib
import fnmatch
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.docs.blocks import REPO, logical_lines, split_comment
from tests.support import free_port, wait_for_port

_SHIM = '''#!{python}
"""curl, with the documented addresses mapped to the test's ports; records each answer."""
import json, os, subprocess, sys
maps = json.loads(os.environ.get("DOCS_CURL_MAP", "{{}}"))
extra = []
for source, target in maps.items():
    extra += ["--connect-to", source + ":" + target]
argv = ["{curl}", *extra, "--write-out", "%{{stderr}}\\n@@docs@@%{{json}}\\n", *sys.argv[1:]]
done = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
sys.stdout.buffer.write(done.stdout)
text, _, info = done.stderr.decode("utf-8", "replace").rpartition("@@docs@@")
sys.stderr.write(text)
with open(os.environ["DOCS_CURL_LOG"], "a") as log:
    import base64
    log.write(json.dumps({{"args": sys.argv[1:], "info": json.loads(info or "{{}}"),
                          "stdout": base64.b64encode(done.stdout).decode()}}) + "\\n")
sys.exit(done.returncode)
'''


@dataclass
class Sandbox:
    """A folder laid out like a checkout, as the README's commands expect: ``./data`` (the repo's
    samples), ``.venv`` (this interpreter's), and a ``bin/`` with the curl shim first on PATH."""

    root: Path
    env: dict[str, str]

    @classmethod
    def make(cls, root: Path, **extra: str) -> Sandbox:
        shutil.copytree(REPO / "data", root / "data", dirs_exist_ok=True)
        venv = root / ".venv"
        if not venv.exists():
            venv.symlink_to(Path(sys.prefix))
        binary = root / "bin"
        binary.mkdir(exist_ok=True)
        curl = shutil.which("curl")
        assert curl is not None, "curl is needed to run the docs' blocks"
        shim = binary / "curl"
        shim.write_text(_SHIM.format(python=sys.executable, curl=curl))
        shim.chmod(0o755)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("GATEWAY_", "AWS_", "PYTEST_"))}
        env.update(HOME=str(root), PATH=f"{binary}:{Path(sys.executable).parent}:{env.get('PATH', '')}",
                   DOCS_CURL_LOG=str(root / "curl.log"), PYTHONPATH=str(REPO), **extra)
        return cls(root, env)

    def calls(self) -> list[dict[str, Any]]:
        log = self.root / "curl.log"
        return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


@dataclass
class Ran:
    returncode: int
    stdout: str
    stderr: str
    calls: list[dict[str, Any]]


def run_bash(text: str, sandbox: Sandbox, maps: Mapping[str, str] | None = None, timeout: float = 60) -> Ran:
    """Run the block in bash (``set -euo pipefail``: a failing line fails the block)."""
    log = sandbox.root / "curl.log"
    log.unlink(missing_ok=True)
    env = {**sandbox.env, "DOCS_CURL_MAP": json.dumps(dict(maps or {}))}
    done = subprocess.run(["bash", "-c", "set -euo pipefail\n" + text], cwd=sandbox.root, env=env,
                          capture_output=True, timeout=timeout, check=False)
    return Ran(done.returncode, done.stdout.decode("utf-8", "replace"), done.stderr.decode("utf-8", "replace"),
               sandbox.calls())


@contextlib.contextmanager
def serving(sandbox: Sandbox, args: list[str], env: Mapping[str, str] | None = None,
            port: int | None = None, public_url: bool = True) -> Iterator[int]:
    """``gateway serve ARGS`` as a real process in the sandbox, on a free port; yields the port.
    The gateway is told its documented address (``--port``, else 8080) as GATEWAY_PUBLIC_URL, as a
    published container port would be, so the URLs it builds are the ones the docs show."""
    port = port or free_port()
    assignments = {k: v for k, _, v in (w.partition("=") for w in args if "=" in w and w.split("=")[0].isupper())}
    words = [w for w in args if not ("=" in w and w.split("=")[0].isupper())]
    documented = "8080"
    if "--port" in words:
        documented = words[words.index("--port") + 1]
        del words[words.index("--port"):words.index("--port") + 2]
    public = {"GATEWAY_PUBLIC_URL": f"http://127.0.0.1:{documented}"} if public_url else {}
    proc = subprocess.Popen([sys.executable, "-m", "gateway", "serve", *words, "--port", str(port)],
                            cwd=sandbox.root, env={**sandbox.env, **public, **assignments, **(env or {})},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        try:
            wait_for_port(port, timeout=30)
        except TimeoutError:
            proc.kill()
            out, err = proc.communicate(timeout=10)
            raise AssertionError(f"gateway serve {' '.join(args)} did not start:\n{err.decode()[-3000:]}") from None
        yield port
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.communicate(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()


def _body(call: dict[str, Any]) -> bytes:
    data = base64.b64decode(call["stdout"])
    if "-i" in call["args"] or "--include" in call["args"]:
        data = data.split(b"\r\n\r\n", 1)[-1]
    return data


def _shape(expected: object, actual: object) -> bool:
    """``{"a", "b"}`` (a set) is an object with exactly those keys; a dict, those keys with those
    shapes; a list, as many items, each its shape; anything else, equal."""
    if isinstance(expected, set):
        return isinstance(actual, dict) and set(actual) == expected
    if isinstance(expected, dict):
        return isinstance(actual, dict) and all(k in actual and _shape(v, actual[k]) for k, v in expected.items())
    if isinstance(expected, list):
        return isinstance(actual, list) and len(actual) == len(expected) and all(map(_shape, expected, actual))
    return expected == actual


_SHOWN = re.compile(r"^(?P<status>\d{3})(?:\s+(?P<error>[a-z][a-z_]*)\b(?!:))?(?:,\s*Location:\s*(?P<location>\S+))?")


def expectation_failures(text: str, calls: list[dict[str, Any]]) -> list[str]:
    """Check each ``curl`` line's comment that shows an answer against the answer that came:
    ``# STATUS [error_code][, Location: PATTERN]`` (``...`` or ``…`` stand for anything), or a JSON
    shape such as ``# {"url", "expires_at"}``. Other comments are prose."""
    lines = [split_comment(line) for line in logical_lines(text)]
    curls = [(command, comment) for command, comment in lines if command.lstrip().startswith("curl ")]
    if len(curls) != len(calls):
        return [f"{len(curls)} curl lines but {len(calls)} curl runs"]
    failures = []
    for (command, shown), call in zip(curls, calls, strict=True):
        info = call["info"]
        if (match := _SHOWN.match(shown)) is not None:
            if str(info.get("http_code")) != match["status"]:
                failures.append(f"{command}: shows {match['status']}, got {info.get('http_code')}")
            if match["error"] and int(match["status"]) >= 400:
                got = json.loads(_body(call) or b"{}").get("error")
                if got != match["error"]:
                    failures.append(f"{command}: shows error {match['error']}, got {got}")
            if match["location"]:
                pattern = match["location"].replace("…", "*").replace("...", "*")
                location = info.get("redirect_url") or ""
                if not fnmatch.fnmatchcase(location, pattern):
                    failures.append(f"{command}: shows Location {pattern}, got {location[:100]}")
        elif shown.startswith("{"):
            expected = ast.literal_eval(shown)
            try:
                actual = json.loads(_body(call))
            except ValueError:
                actual = None
            if not _shape(expected, actual):
                failures.append(f"{command}: shows {shown}, got {str(actual)[:200]}")
    return failures


_PRINTED = re.compile(r"^(?P<prefix>[0-9a-f]{8,})(?:\.\.\.|…)")


def printed_failures(text: str, stdout: str) -> list[str]:
    """A command whose comment starts with a hex prefix and ``...`` (a digest, a signature) must
    have printed a word that starts with it."""
    words = stdout.split()
    failures = []
    for command, comment in (split_comment(line) for line in logical_lines(text)):
        match = _PRINTED.match(comment)
        if match and not any(word.startswith(match["prefix"]) for word in words):
            failures.append(f"{command[:60]}...: shows {match['prefix']}..., printed {stdout[:300]!r}")
    return failures


def wait_until_ready(port: int, timeout: float = 20) -> None:
    """Until /readyz answers 200 (the policy is loaded)."""
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                return
        time.sleep(0.1)
    raise TimeoutError(f"/readyz on {port} did not answer 200")
