"""The checks a policy gets beyond its schema, shared by ``gateway serve`` (the state builder) and
``gateway check-config``, so that a file check-config passes is one serve accepts.

Two kinds, both offline: what the schema cannot see because it spans sections or reads a file that
failed elsewhere (``raw_problems``: so that one run lists every problem, never in stages), and what
a dataset's settings imply for the state serve builds (``state_problems``: a GCS HMAC signer has no
access token for proxy delivery). Warnings are what is valid but worth knowing (``warnings``).
"""

from __future__ import annotations

from typing import Any

from gateway.config.schema import Dataset, Defaults, PolicyFile, ttl_problems
from gateway.config.types import parse_duration


def _names(items: object, field: str) -> set[str]:
    return {str(item.get(field)) for item in items if isinstance(item, dict)} if isinstance(items, list) else set()


def _mapping(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def raw_references(data: dict[str, Any]) -> list[str]:
    """Rule references to unknown vendors or issuers, read leniently from a file that failed the
    schema, so that one run reports those too."""
    auth = _mapping(data.get("auth"))
    vendors = auth.get("vendors")
    issuers = _names(auth.get("oidc"), "name")
    known_vendors = _names(vendors, "name") | issuers
    for vendor in vendors if isinstance(vendors, list) else []:
        if isinstance(vendor, dict):
            known_vendors |= _names(vendor.get("keys"), "id")
    problems = []
    for name, dataset in _mapping(data.get("datasets")).items():
        rules = _mapping(dataset).get("rules")
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


def _lenient_defaults(raw: dict[str, Any]) -> Defaults:
    """The defaults as written where each value parses, the built-in default where it does not (the
    schema has reported that one already)."""
    fields: dict[str, Any] = {}
    for name in Defaults.model_fields:
        if name in raw:
            try:
                Defaults.model_validate({name: raw[name]})
                fields[name] = raw[name]
            except ValueError:
                continue
    try:
        return Defaults.model_validate(fields)
    except ValueError:  # e.g. values valid alone that clash: keep the built-in defaults
        return Defaults()


def raw_ttl_problems(data: dict[str, Any]) -> list[str]:
    """The URL lifetimes' bounds (``schema.ttl_problems``) over the values of a file that failed
    the schema elsewhere: an empty list in one rule must not hide a TTL above the maximum."""
    ttls: dict[str, float | None] = {}
    for name, dataset in _mapping(data.get("datasets")).items():
        value = _mapping(dataset).get("url_ttl")
        try:
            ttls[str(name)] = None if value is None else parse_duration(value)
        except ValueError:
            continue  # reported by the schema
    return ttl_problems(_lenient_defaults(_mapping(data.get("defaults"))), ttls)


def raw_problems(data: dict[str, Any]) -> list[str]:
    """The cross-section checks of a file whose schema failed (see the module docstring), and the
    state checks of each dataset that is valid on its own."""
    problems = raw_references(data) + raw_ttl_problems(data)
    for name, raw in _mapping(data.get("datasets")).items():
        try:
            dataset = Dataset.model_validate(raw)
        except ValueError:
            continue  # reported by the schema
        problems += dataset_problems(str(name), dataset)
    return problems


def streams_from_storage(dataset: Dataset) -> bool:
    """Whether the gateway reads this dataset's objects itself (proxy, and auto for what a page can read)."""
    return dataset.delivery != "redirect" and dataset.backend.kind != "local"


def gcs_signs_with_hmac(dataset: Dataset) -> bool:
    backend = dataset.backend
    if backend.kind != "gcs":
        return False
    return backend.signer == "hmac" or (backend.signer == "auto" and backend.hmac_access_id_env is not None)


def dataset_problems(name: str, dataset: Dataset) -> list[str]:
    """What a valid dataset asks for that no state can provide."""
    if streams_from_storage(dataset) and gcs_signs_with_hmac(dataset):
        return [f"datasets.{name}.delivery: proxy delivery reads GCS with an OAuth access token, and an HMAC key "
                "has none: use a service-account key or Workload Identity (signer: key or iam), or delivery: redirect"]
    return []


def state_problems(policy: PolicyFile) -> list[str]:
    """What a valid file asks for that no state can provide: serve's state builder refuses these at
    startup and on a reload, and check-config reports them, from this one function."""
    return [problem for name, dataset in policy.datasets.items() for problem in dataset_problems(name, dataset)]


def warnings(policy: PolicyFile) -> list[str]:
    """Valid, and worth knowing: each dataset's delivery caveats, and datasets no request can reach."""
    closed = [f"datasets.{name}: no rules, so no request can reach it (deny by default); add a rule to open it"
              for name, dataset in policy.datasets.items() if not dataset.rules]
    return closed + policy.warnings()
