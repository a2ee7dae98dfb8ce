"""What the commands share: the epilogs, the settings from options and environment, the config path."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any, Protocol

from pydantic import ValidationError

from gateway.errors import ConfigError
from gateway.settings import Settings, describe_errors, unknown_variables


class Subparsers(Protocol):
    """What a command's ``register`` is handed: ``parser.add_subparsers()``'s result."""

    def add_parser(self, name: str, **kwargs: Any) -> argparse.ArgumentParser: ...


# Only what is true of every command that shows it: an option names its environment variable in its
# own help when it has one, and most settings exist only in the environment.
EPILOG = ("Options that can also be set in the environment name their variable (--config: GATEWAY_CONFIG). "
          "The process settings of `gateway serve` are GATEWAY_* variables: see the README, \"Process settings\".")
SERVE_EPILOG = ("Each option above can also be set in the environment, as the variable its help names. Every "
                "other setting exists only in the environment (GATEWAY_REDIS_URL, GATEWAY_ALLOWED_HOSTS, "
                "GATEWAY_ADMIN_PORT, GATEWAY_LOG_LEVEL, ...): see the README, \"Process settings\". A GATEWAY_* "
                "variable that is no setting is reported as a warning, with the closest real name.")


def settings_from(overrides: dict[str, object], *, options: dict[str, str] | None = None) -> Settings:
    """The settings of a command: its options (``overrides``, None when not given) over the
    environment. Bad values are one line each naming the variable, or the ``options`` flag they came
    from; a misspelled ``GATEWAY_*`` variable is a warning on stderr, since it is otherwise ignored."""
    given = {k: v for k, v in overrides.items() if v is not None}
    for warning in unknown_variables(os.environ):
        print(f"gateway: warning: {warning}", file=sys.stderr)
    try:
        return Settings(**given)  # type: ignore[arg-type]
    except ValidationError as exc:
        flags = {field: flag for field, flag in (options or {}).items() if field in given}
        raise ConfigError("settings (GATEWAY_* environment and options)", describe_errors(exc, flags)) from None


def config_path(args: argparse.Namespace) -> Path:
    """``--config``, then a positional FILE where the command has one, then GATEWAY_CONFIG."""
    given = getattr(args, "config", None) or getattr(args, "file", None) or os.environ.get("GATEWAY_CONFIG")
    if not given:
        raise ConfigError(args.command, ["give --config FILE or set GATEWAY_CONFIG"])
    return Path(given)
