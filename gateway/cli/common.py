"""What the commands share: the epilog, the settings from options and environment, the config path."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any, Protocol

from pydantic import ValidationError

from gateway.errors import ConfigError
from gateway.settings import Settings


class Subparsers(Protocol):
    """What a command's ``register`` is handed: ``parser.add_subparsers()``'s result."""

    def add_parser(self, name: str, **kwargs: Any) -> argparse.ArgumentParser: ...


EPILOG = "Every option can also be set in the environment: GATEWAY_CONFIG, GATEWAY_HOST, GATEWAY_PORT, ..."


def settings_from(overrides: dict[str, object]) -> Settings:
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = [f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}" for e in exc.errors()]
        raise ConfigError("settings (GATEWAY_* environment and options)", problems) from None


def config_path(args: argparse.Namespace) -> Path:
    """``--config``, then a positional FILE where the command has one, then GATEWAY_CONFIG."""
    given = getattr(args, "config", None) or getattr(args, "file", None) or os.environ.get("GATEWAY_CONFIG")
    if not given:
        raise ConfigError(args.command, ["give --config FILE or set GATEWAY_CONFIG"])
    return Path(given)
