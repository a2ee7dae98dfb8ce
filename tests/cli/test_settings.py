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
    ({"GATEWAY_PORT": "70000"}, "GATEWAY_PORT: Input should be less than or equal to 65535"),
    ({"GATEWAY_TRUSTED_PROXIES": "10.0.0.0/8,not-a-network"},
     "GATEWAY_TRUSTED_PROXIES: Input is not a valid IPv4 network or Input is not a valid IPv6 network"),
    ({"GATEWAY_MAX_CONCURRENCY": "-1"}, "GATEWAY_MAX_CONCURRENCY: Input should be greater than or equal to 0"),
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


@pytest.mark.parametrize(("env", "line"), [
    ({"GATEWAY_LOG_LEVEL": "bogus"},
     "GATEWAY_LOG_LEVEL: must be one of 'debug', 'info', 'warning', 'error' or 'critical'"),
    ({"GATEWAY_LOG_FORMAT": "xml"}, "GATEWAY_LOG_FORMAT: must be one of 'json' or 'text'"),
    ({"GATEWAY_FORWARDED_HEADER": "x-real-ip"},
     "GATEWAY_FORWARDED_HEADER: must be one of 'x-forwarded-for' or 'forwarded'"),
    ({"GATEWAY_WORKERS": "two"}, "GATEWAY_WORKERS: Input should be a valid integer"),
])
def test_a_bad_value_is_one_line_naming_the_variable_and_what_it_takes(tmp_path: Path, env: dict[str, str],
                                                                       line: str) -> None:
    """Issue 25: GATEWAY_LOG_LEVEL=bogus was a traceback from logging; GATEWAY_WORKERS=two one from int()."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    result = subprocess.run([sys.executable, "-m", "gateway", "serve", "--local-dir", str(tmp_path)],
                            env={**clean, **env}, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    [problem] = [text for text in result.stderr.splitlines() if text.startswith("  - ")]
    assert problem.startswith(f"  - {line}"), result.stderr


def test_a_bad_option_is_named_as_the_option(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "gateway", "serve", "--local-dir", str(tmp_path), "--port", "70000"],
                            capture_output=True, text=True, timeout=60, check=False,
                            env={k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")})
    assert result.returncode == 1
    assert "  - --port: Input should be less than or equal to 65535" in result.stderr


def test_log_levels_are_accepted_in_any_case() -> None:
    from gateway.settings import Settings

    assert Settings(log_level="DEBUG").log_level == "debug"  # type: ignore[arg-type]


def test_a_misspelled_variable_is_a_warning_naming_the_real_one(tmp_path: Path) -> None:
    """A typo would otherwise be ignored in silence, and the default it meant to change stay."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env = {**clean, "GATEWAY_LOG_LVL": "debug", "GATEWAY_ALLOWED_HOST": "gw.example", "GATEWAY_NONSENSE_X": "1",
           "GATEWAY_PORT": "70000"}  # a refused value ends the run before anything listens
    result = subprocess.run([sys.executable, "-m", "gateway", "serve", "--local-dir", str(tmp_path)], env=env,
                            capture_output=True, text=True, timeout=60, check=False)
    assert "warning: GATEWAY_LOG_LVL is not a setting and is ignored (did you mean GATEWAY_LOG_LEVEL?)" in result.stderr
    assert "GATEWAY_ALLOWED_HOST is not a setting and is ignored (did you mean GATEWAY_ALLOWED_HOSTS?)" in result.stderr
    assert "GATEWAY_NONSENSE_X is not a setting and is ignored (see the README's Process settings)" in result.stderr
    assert "GATEWAY_PORT is not a setting" not in result.stderr


def test_unknown_variables_never_flags_a_real_setting() -> None:
    from gateway.settings import Settings, unknown_variables, variable

    assert unknown_variables({variable(name): "x" for name in Settings.model_fields}) == []


@pytest.mark.parametrize("command", ["check-config", "explain", "urls"])
def test_help_of_commands_without_settings_does_not_promise_the_environment(command: str) -> None:
    """Only --config has a variable there; "every option can be set in the environment" was false."""
    result = subprocess.run([sys.executable, "-m", "gateway", command, "--help"], capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 0
    assert "Every option" not in result.stdout and "every option" not in result.stdout
    assert "GATEWAY_CONFIG" in result.stdout


def test_serve_help_names_a_variable_for_each_option_and_points_to_the_rest() -> None:
    result = subprocess.run([sys.executable, "-m", "gateway", "serve", "--help"], capture_output=True, text=True,
                            timeout=60, check=False)
    text = " ".join(result.stdout.split())
    for option, name in (("--config", "CONFIG"), ("--local-dir", "LOCAL_DIR"), ("--host", "HOST"),
                         ("--port", "PORT"), ("--cors-origin", "CORS_ORIGINS"), ("--workers", "WORKERS"),
                         ("--tls-cert", "TLS_CERT"), ("--tls-key", "TLS_KEY")):
        assert option in text and f"GATEWAY_{name}" in text
    assert "Every other setting exists only in the environment" in text
