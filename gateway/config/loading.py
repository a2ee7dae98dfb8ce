"""Reading a policy file: YAML, then the schema, then cross-references, with every problem reported
at once and located the way the user wrote it (``datasets.x.rules.0.networks``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from gateway.config.schema import PolicyFile
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


def _names(items: object, field: str) -> set[str]:
    return {str(item.get(field)) for item in items if isinstance(item, dict)} if isinstance(items, list) else set()


def _raw_references(data: dict[str, Any]) -> list[str]:
    """Rule references to unknown vendors or issuers, read leniently from a file that failed the
    schema, so that one run reports those too."""
    auth: dict[str, Any] = data["auth"] if isinstance(data.get("auth"), dict) else {}
    vendors = auth.get("vendors")
    issuers = _names(auth.get("oidc"), "name")
    known_vendors = _names(vendors, "name") | issuers
    for vendor in vendors if isinstance(vendors, list) else []:
        if isinstance(vendor, dict):
            known_vendors |= _names(vendor.get("keys"), "id")
    problems = []
    datasets = data.get("datasets")
    for name, dataset in (datasets.items() if isinstance(datasets, dict) else []):
        rules = dataset.get("rules") if isinstance(dataset, dict) else None
        for i, rule in enumerate(rules if isinstance(rules, list) else []):
            if not isinstance(rule, dict):
                continue
            for field, known, section in (("vendors", known_vendors, "auth.vendors or auth.oidc"),
                                          ("issuers", issuers, "auth.oidc")):
                values = rule.get(field)
                for value in values if isinstance(values, list) else []:
                    if str(value) not in known:
                        problems.append(f"datasets.{name}.rules.{i}.{field}: {value!r} is not in {section}")
    return problems


def parse_policy(text: str, source: str = "<policy>") -> PolicyFile:
    """Parse and validate a policy document. Raises ConfigError listing every problem found: keys
    defined twice (see ``yaml_source``), the schema's, and the cross-references'."""
    data, problems = read_yaml(text, source)
    if not isinstance(data, dict):
        raise ConfigError(source, [*problems, "(top level): expected a mapping with version and datasets"])
    try:
        policy = PolicyFile.model_validate(data)
    except ValidationError as exc:
        problems += [f"{_location(err['loc'])}: {err['msg']}" for err in exc.errors()]
        raise ConfigError(source, problems + _raw_references(data)) from None
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
