"""Broken process settings are refused at startup with every problem listed, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.parametrize(("env", "message"), [
    ({"GATEWAY_REDIS_URL": "http://redis:6379"}, "GATEWAY_REDIS_URL must start with redis://"),
    ({"GATEWAY_SIGNING_KEY": "short"}, "at least 32 characters"),
    ({"GATEWAY_PORT": "70000"}, "port"),
    ({"GATEWAY_TRUSTED_PROXIES": "10.0.0.0/8,not-a-network"}, "trusted_proxies"),
    ({"GATEWAY_MAX_CONCURRENCY": "-1"}, "max_concurrency"),
])
def test_bad_settings_are_refused_with_a_clear_message(tmp_path: Path, env: dict[str, str], message: str) -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    result = subprocess.run([sys.executable, "-m", "gateway", "serve", "--local-dir", str(tmp_path)],
                            env={**clean, **env}, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 1
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    if "GATEWAY_SIGNING_KEY" in env:
        assert env["GATEWAY_SIGNING_KEY"] not in result.stderr  # a rejected key is never echoed back
