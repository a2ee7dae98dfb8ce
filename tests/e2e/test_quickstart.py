"""The quickstart, end to end: ``gateway serve --local-dir`` as a real process, a browser-like
client following the redirect, and the audit log that process writes on stdout."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.e2e.conftest import A_BIN, make_data_dir
from tests.e2e.helpers import FakeClock, assert_error, local_policy, raw_request
from tests.support import RunningGateway, free_port, wait_for_port

ROOT = Path(__file__).resolve().parents[2]


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env.update(extra)
    return env


def run_cli(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway", *args], capture_output=True, text=True, timeout=30,
                          cwd=cwd or ROOT, env=env or clean_env())


@dataclass
class Session:
    port: int
    responses: dict[str, httpx.Response | object] = field(default_factory=dict)
    locations: list[str] = field(default_factory=list)
    stdout: str = ""
    stderr: str = ""
    returncode: int | None = None

    def audit(self) -> list[dict[str, object]]:
        return [json.loads(line) for line in self.stdout.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Session]:
    """Start the CLI, make a scripted set of requests, stop it, and keep everything it printed."""
    root = tmp_path_factory.mktemp("quickstart")
    data = make_data_dir(root)
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway", "serve", "--local-dir", str(data), "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=root, env=clean_env(),
    )
    s = Session(port)
    try:
        wait_for_port(port, timeout=20)
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base, follow_redirects=False, timeout=10) as client:
            redirect = client.get("/v1/datasets/local/objects/a.bin", headers={"User-Agent": "qs-test"})
            s.responses["redirect"] = redirect
            location = redirect.headers.get("location", "")
            s.locations.append(location)
            s.responses["fetch"] = client.get(location)
            parts = urlsplit(location)
            query = parse_qs(parts.query)
            sig = query.get("sig", [""])[0]
            bad_sig = ("A" if sig[:1] != "A" else "B") + sig[1:]
            s.responses["tampered"] = client.get(f"{parts.path}?exp={query['exp'][0]}&sig={bad_sig}")
            s.responses["traversal"] = raw_request(port, b"/v1/datasets/local/objects/%2e%2e/outside.txt")
            s.responses["unknown"] = client.get("/v1/datasets/nope/objects/a.bin")
            s.responses["json"] = client.get("/v1/datasets/local/objects/hello.txt?format=json")
            s.locations.append(s.responses["json"].json().get("url", ""))  # type: ignore[union-attr]
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            out, err = proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        s.stdout, s.stderr, s.returncode = out.decode(), err.decode(), proc.returncode
    yield s


def test_redirect_then_bytes(session: Session) -> None:
    redirect = session.responses["redirect"]
    assert isinstance(redirect, httpx.Response)
    assert redirect.status_code == 302
    location = redirect.headers["location"]
    assert location.startswith(f"http://127.0.0.1:{session.port}/v1/local/local/a.bin?")
    fetch = session.responses["fetch"]
    assert isinstance(fetch, httpx.Response)
    assert fetch.status_code == 200
    assert fetch.content == A_BIN
    assert fetch.headers["content-length"] == str(len(A_BIN))


def test_tampered_signature_is_403(session: Session) -> None:
    assert_error(session.responses["tampered"], 403, "forbidden")  # type: ignore[arg-type]


def test_traversal_is_400(session: Session) -> None:
    assert_error(session.responses["traversal"], 400, "invalid_key")  # type: ignore[arg-type]


def test_an_unknown_dataset_is_refused_like_any_dataset_without_a_credential(session: Session) -> None:
    assert_error(session.responses["unknown"], 401, "unauthenticated")  # type: ignore[arg-type]


def test_process_stops_cleanly_and_says_where_it_serves(session: Session) -> None:
    # uvicorn re-raises the SIGTERM it caught once shutdown is complete, so -15 is a clean stop too.
    assert session.returncode in (0, -signal.SIGTERM), session.stderr
    assert "Application shutdown complete" in session.stderr
    assert f"127.0.0.1:{session.port}" in session.stderr
    assert "/v1/datasets/local/objects/" in session.stderr


def test_audit_lines_record_each_decision(session: Session) -> None:
    records = session.audit()
    by_action = [(r["action"], r["decision"], r.get("rule") or r.get("reason"), r["status"]) for r in records]
    assert ("redirect", "allow", "loopback", 302) in by_action
    assert ("fetch", "allow", "signed_url", 200) in by_action
    assert ("fetch", "deny", "bad_signature", 403) in by_action
    assert ("redirect", "deny", "invalid_key", 400) in by_action
    allowed = next(r for r in records if r["action"] == "redirect" and r["decision"] == "allow")
    assert allowed["key"] == "a.bin" and allowed["dataset"] == "local"
    assert allowed["client_ip"] == "127.0.0.1" and allowed["user_agent"] == "qs-test"
    assert allowed["principal"]["method"] == "anonymous"  # type: ignore[index]
    for record in records:
        assert {"prev_hash", "hash", "request_id", "time", "latency_ms"} <= set(record)


def test_no_signature_or_signed_url_in_any_output(session: Session) -> None:
    assert session.stdout.strip(), "no audit lines at all"
    for text in (session.stdout, session.stderr):
        assert "sig=" not in text
        for location in session.locations:
            assert location
            assert location not in text
            sig = parse_qs(urlsplit(location).query)["sig"][0]
            assert sig not in text


# -- the CLI's own messages -----------------------------------------------------------------

def test_missing_local_dir_exits_1_with_a_clear_message(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-folder"
    result = run_cli("serve", "--local-dir", str(missing), "--port", str(free_port()), cwd=tmp_path)
    assert result.returncode == 1, result
    assert str(missing) in result.stderr
    assert "does not exist" in result.stderr and "--local-dir" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_default_data_dir_exits_1(tmp_path: Path) -> None:
    result = run_cli("serve", "--port", str(free_port()), cwd=tmp_path)
    assert result.returncode == 1, result
    assert "does not exist" in result.stderr and "GATEWAY_LOCAL_DIR" in result.stderr


def test_serve_help_mentions_env_vars() -> None:
    result = run_cli("serve", "--help")
    assert result.returncode == 0
    for name in ("GATEWAY_CONFIG", "GATEWAY_LOCAL_DIR", "GATEWAY_PORT", "GATEWAY_CORS_ORIGINS"):
        assert name in result.stdout


def test_check_config_help_mentions_env_vars() -> None:
    result = run_cli("check-config", "--help")
    assert result.returncode == 0
    assert "GATEWAY_CONFIG" in result.stdout


def test_check_config_reads_gateway_config(tmp_path: Path) -> None:
    policy = local_policy(tmp_path / "policy.yaml", tmp_path)
    assert run_cli("check-config", env=clean_env(GATEWAY_CONFIG=str(policy))).returncode == 0
    assert run_cli("check-config", "--config", str(policy)).returncode == 0


def test_check_config_valid_and_invalid(tmp_path: Path) -> None:
    good = local_policy(tmp_path / "good.yaml", tmp_path)
    result = run_cli("check-config", str(good))
    assert result.returncode == 0 and "valid" in result.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nbogus: 1\ndatasets:\n  x:\n    backend: {kind: local, path: /tmp}\n"
                   "    rules: [{name: r, anonymous: true}]\n")
    result = run_cli("check-config", str(bad))
    assert result.returncode == 1
    assert "bogus" in result.stderr and "networks" in result.stderr  # every problem, not just the first
    assert "Traceback" not in result.stderr


# -- expiry and client IP, in process ----------------------------------------------------------

def test_expired_url_is_403(gateway_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    clock = FakeClock()
    data = make_data_dir(tmp_path)
    gw: RunningGateway = gateway_server(clock=clock, local_dir=data)
    with httpx.Client(base_url=gw.url, timeout=10) as client:
        location = client.get("/v1/datasets/local/objects/a.bin").headers["location"]
        assert client.get(location).status_code == 200
        exp = int(parse_qs(urlsplit(location).query)["exp"][0])
        clock.now = exp - 1
        assert client.get(location).status_code == 200
        clock.now = exp + 1
        body = assert_error(client.get(location), 403, "forbidden")
        assert "expired" in body["detail"]


@pytest.mark.parametrize(
    ("networks", "trusted", "expected"),
    [
        (["10.0.0.0/8"], [], 401),  # the spoofed header is ignored: the peer is 127.0.0.1
        (["127.0.0.1/32"], [], 302),  # and it does not take away the real peer's access
        (["10.0.0.0/8"], ["127.0.0.1/32"], 302),  # control: from a trusted proxy the header counts
        (["127.0.0.1/32"], ["127.0.0.1/32"], 401),
    ],
)
def test_spoofed_x_forwarded_for_changes_nothing(gateway_server, tmp_path: Path, networks: list[str],  # type: ignore[no-untyped-def]
                                                 trusted: list[str], expected: int) -> None:
    data = make_data_dir(tmp_path)
    policy = local_policy(tmp_path / "policy.yaml", data, networks=networks)
    gw: RunningGateway = gateway_server(config=policy, trusted_proxies=trusted)
    for header in (b"X-Forwarded-For", b"Forwarded"):
        value = b"10.0.0.1" if header == b"X-Forwarded-For" else b"for=10.0.0.1"
        if header == b"Forwarded" and trusted:
            continue  # only X-Forwarded-For is read by default; Forwarded alone is covered untrusted
        response = raw_request(gw.port, b"/v1/datasets/local/objects/a.bin", headers=[(header, value)])
        if expected == 401:  # no credential, and no rule admits the address
            assert_error(response, 401, "unauthenticated")
        else:
            assert response.status == 302, response.body


# -- the image's embedded default (Dockerfile: GATEWAY_HOST=0.0.0.0, no public URL) -----------------

def _dockerfile_env() -> dict[str, str]:
    """The GATEWAY_* values of the Dockerfile's final ENV, as the image runs with them."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    env: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("ENV "):
            for word in line.split()[1:]:
                name, sep, value = word.partition("=")
                if sep and name.startswith("GATEWAY_"):
                    env[name] = value
    return env


def test_the_images_default_answers_a_loopback_client_by_its_loopback_name(tmp_path: Path) -> None:
    """docs/deploy.md: the embedded default admits loopback clients. Listening on 0.0.0.0 without a
    public URL, the only Host it answered was 0.0.0.0 (issue 25, finding 4): a client in the
    container asking for 127.0.0.1:8080 got 421."""
    env = _dockerfile_env()
    assert env["GATEWAY_HOST"] == "0.0.0.0" and "GATEWAY_PUBLIC_URL" not in env
    data = make_data_dir(tmp_path)
    port = free_port()
    env.update(GATEWAY_LOCAL_DIR=str(data), GATEWAY_PORT=str(port))
    proc = subprocess.Popen([sys.executable, "-m", "gateway", "serve"], cwd=tmp_path, env=clean_env(**env),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for_port(port, timeout=20)
        for host in (f"127.0.0.1:{port}", f"localhost:{port}", "127.0.0.1:8080"):
            answer = httpx.get(f"http://127.0.0.1:{port}/v1/datasets/local/objects/a.bin", headers={"Host": host},
                               timeout=10)
            assert answer.status_code == 302, (host, answer.text)
        stranger = httpx.get(f"http://127.0.0.1:{port}/v1/datasets/local/objects/a.bin",
                             headers={"Host": "rebound.example"}, timeout=10)
        assert stranger.status_code == 421  # DNS rebinding protection stays
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=15)
