"""Reading a policy file: YAML, then the schema, then the checks of ``validation.py``, with every
problem reported at once and located the way the user wrote it (``datasets.x.rules.0.networks``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError

from gateway.config.schema import PolicyFile
from gateway.config.validation import raw_problems
from gateway.config.yaml_source import read_yaml
from gateway.errors import ConfigError

_KINDS = {"local", "s3", "gcs", "azure", "stdout", "file", "redis_stream"}  # union branches, not user keys


def _location(loc: tuple[int | str, ...]) -> str:
    """The user's path to a problem, without pydantic's internal tags: validator names such as
    ``function-after[...]``, and the union branch that follows ``backend`` or a sink's index."""
    parts: list[str] = []
    for i, part in enumerate(loc):
        if isinstance(part, str) and "[" in part:
            continue
        previous = loc[i - 1] if i else None
        after_sink_index = isinstance(previous, int) and i > 1 and loc[i - 2] == "sinks"
        if part in _KINDS and (previous == "backend" or after_sink_index):
            continue
        parts.append(str(part))
    return ".".join(parts) or "(top level)"


def parse_policy(text: str, source: str = "<policy>") -> PolicyFile:
    """Parse and validate a policy document. Raises ConfigError listing every problem found: keys
    defined twice (see ``yaml_source``), the schema's, and the cross-section checks' (references,
    URL lifetimes), which run on what parsed even when the schema failed elsewhere."""
    data, problems = read_yaml(text, source)
    if not isinstance(data, dict):
        raise ConfigError(source, [*problems, "(top level): expected a mapping with version and datasets"])
    try:
        policy = PolicyFile.model_validate(data)
    except ValidationError as exc:
        problems += [f"{_location(err['loc'])}: {err['msg'].removeprefix('Value error, ')}" for err in exc.errors()]
        raise ConfigError(source, problems + raw_problems(data)) from None
    problems += policy.cross_check()
    if problems:
        raise ConfigError(source, problems)
    return policy


def load_policy(path: Path) -> tuple[PolicyFile, bytes]:
    """Read and validate a policy file; returns the policy and the raw bytes it came from."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(str(path), [f"cannot read the file: {exc.strerror or exc}"]) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(str(path), ["the file is not valid UTF-8"]) from None
    return parse_policy(text, str(path)), raw


def default_policy(local_dir: Path, cors_origins: list[str] | None = None) -> PolicyFile:
    """The embedded default: one local dataset, anonymous access from loopback only."""
    return PolicyFile.model_validate(
        {
            "version": 1,
            "cors": {"allow_origins": cors_origins or []},
            "datasets": {
                "local": {
                    "backend": {"kind": "local", "path": str(local_dir)},
                    "rules": [
                        {"name": "loopback", "anonymous": True, "networks": ["127.0.0.0/8", "::1/128"]}
                    ],
                }
            },
        }
    )
