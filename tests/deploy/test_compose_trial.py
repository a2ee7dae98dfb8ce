"""The docker compose trial of docs/deploy.md, run without Docker: ``gateway serve`` with the compose
file's gateway environment and its policy, a real S3-compatible store standing in for MinIO, a real
Redis for ``redis``, and the page's own curl lines sent as written (``127.0.0.1:8080`` and
``127.0.0.1:9000`` mapped to the stand-ins' ports by the docs' curl shim, so ``Host`` stays as
documented).

What differs from Docker, and why it does not matter here: the client address is 127.0.0.1 rather
than the trial network's gateway address (the policy's anonymous rule names both), and the store's
credentials are the stand-in's own (s3rver knows one account), in place of the trial user's.
"""

from __future__ import annotations

import shutil
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from tests.docs.blocks import block_by_id
from tests.docs.shell import Sandbox, expectation_failures, run_bash, serving, wait_until_ready
from tests.s3rver.harness import ACCESS_KEY, SECRET_KEY, running_s3rver, s3_client
from tests.support import REPO, RedisServer, need


def _gateway_environment(compose: dict[str, Any], redis: RedisServer) -> dict[str, str]:
    gateway = compose["services"]["gateway"]
    env = {k: str(v) for k, v in gateway["environment"].items()}
    config = PurePosixPath(env["GATEWAY_CONFIG"])
    for volume in gateway["volumes"]:
        source, target, *_ = str(volume).split(":")
        if target == str(config.parent):
            env["GATEWAY_CONFIG"] = str((REPO / source / config.name).resolve())
    env["GATEWAY_REDIS_URL"] = redis.url  # the `redis` service
    env.update(AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY, AWS_EC2_METADATA_DISABLED="true",
               AWS_CONFIG_FILE="/nonexistent", AWS_SHARED_CREDENTIALS_FILE="/nonexistent")
    return env


def test_the_documented_requests_answer_as_documented(tmp_path: Path, redis_server: RedisServer) -> None:
    need(shutil.which("file") is not None, "the trial's commands use file(1)")
    compose: dict[str, Any] = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    block = block_by_id("docs/deploy.md", "compose-trial")
    requests = "\n".join(line for line in block.text.splitlines() if not line.startswith("docker "))
    env = _gateway_environment(compose, redis_server)
    assert env["GATEWAY_HOST"] == "0.0.0.0" and "GATEWAY_PUBLIC_URL" not in env
    assert "GATEWAY_ALLOWED_HOSTS" not in env  # the default must serve the documented Host
    sandbox = Sandbox.make(tmp_path)
    with running_s3rver() as store:
        client = s3_client(store)
        client.create_bucket(Bucket="datasets")
        for name in ("sample.png", "sample.pcd"):
            client.put_object(Bucket="datasets", Key=f"samples/{name}", Body=(REPO / "data" / name).read_bytes())
        with serving(sandbox, [], env=env, public_url=False) as port:
            wait_until_ready(port)
            maps = {"127.0.0.1:8080": f"127.0.0.1:{port}", "127.0.0.1:9000": store.removeprefix("http://")}
            ran = run_bash(requests, sandbox, maps)
    assert ran.returncode == 0, f"{ran.stdout[-2000:]}\n{ran.stderr[-2000:]}"
    assert not expectation_failures(requests, ran.calls)
    assert "PNG image data" in ran.stdout  # `file sample.png`: the object's bytes, through the signed URL
    assert (sandbox.root / "sample.png").read_bytes() == (REPO / "data" / "sample.png").read_bytes()
