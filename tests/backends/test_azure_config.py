"""``backend.kind: azure`` in the policy file: what check-config accepts, and what it refuses with which reason."""

from __future__ import annotations

import pytest

from gateway.config import parse_policy
from gateway.config.backends import AzureBackend
from gateway.errors import ConfigError


def _policy(backend: str, delivery: str = "redirect") -> str:
    return f"""version: 1
datasets:
  scans:
    delivery: {delivery}
    backend: {backend}
    rules: [{{name: office, anonymous: true, networks: [10.0.0.0/8]}}]
"""


def _problems(backend: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_policy(_policy(backend))
    return caught.value.problems


def test_a_plain_azure_dataset_is_accepted_with_its_defaults() -> None:
    policy = parse_policy(_policy("{kind: azure, account: acmedata, container: scans, prefix: ct/}"))
    backend = policy.datasets["scans"].backend
    assert isinstance(backend, AzureBackend)
    assert backend.blob_endpoint() == "https://acmedata.blob.core.windows.net"
    assert (backend.credential, backend.api_version, backend.delegation_key_life) == ("default", "2026-10-06", 14400)


@pytest.mark.parametrize(("source_ips", "sip"), [
    ("[203.0.113.7/32]", "203.0.113.7"),
    ("[203.0.113.0/24]", "203.0.113.0-203.0.113.255"),
    ("[203.0.113.0/25, 203.0.113.128/25]", "203.0.113.0-203.0.113.255"),  # adjacent: one range
    ("[203.0.113.0/24, 203.0.113.16/28, 203.0.114.0/23]", "203.0.113.0-203.0.115.255"),  # overlapping, adjacent
])
def test_network_binding_becomes_one_sip_range(source_ips: str, sip: str) -> None:
    policy = parse_policy(_policy(f"{{kind: azure, account: acmedata, container: scans, "
                                  f"network_binding: {{source_ips: {source_ips}}}}}"))
    backend = policy.datasets["scans"].backend
    assert isinstance(backend, AzureBackend) and backend.network_binding is not None
    assert backend.network_binding.sip() == sip


@pytest.mark.parametrize(("source_ips", "reason"), [
    ("[203.0.113.0/24, 198.51.100.0/24]", "they are 2 separate address ranges"),
    ("[10.0.0.0/24, 10.0.2.0/24, 10.0.4.0/24]", "they are 3 separate address ranges"),
    ("[2001:db8::/32]", "an IPv6 network cannot go into a SAS's sip"),
])
def test_several_ranges_are_refused_with_the_way_out(source_ips: str, reason: str) -> None:
    [problem] = _problems(f"{{kind: azure, account: acmedata, container: scans, network_binding: "
                          f"{{source_ips: {source_ips}}}}}")
    assert problem.startswith("datasets.scans.backend.network_binding:")
    assert reason in problem and "one IPv4 address range (sip)" in problem
    assert "delivery: proxy, or one dataset per range" in problem


@pytest.mark.parametrize(("backend", "expected"), [
    ("{kind: azure, account: acmedata, container: scans, credential: account_key}",
     "exactly one of account_key_env or account_key_file"),
    ("{kind: azure, account: acmedata, container: scans, credential: account_key, account_key_env: K, "
     "account_key_file: /k}", "exactly one of account_key_env or account_key_file"),
    ("{kind: azure, account: acmedata, container: scans, account_key_env: K}", "go with credential: account_key"),
    ("{kind: azure, account: acmedata, container: scans, account_key: c2VjcmV0}", "Extra inputs are not permitted"),
    ("{kind: azure, account: Acme_Data, container: scans}", "account"),
    ("{kind: azure, account: acmedata, container: Scans}", "container"),
    ("{kind: azure, account: acmedata, container: scans, endpoint: 'ftp://x'}", "endpoint must be an http(s) URL"),
    ("{kind: azure, account: acmedata, container: scans, endpoint: 'https://a.b/?sv=1'}", "endpoint must be"),
    ("{kind: azure, account: acmedata, container: scans, api_version: '2019-07-07'}", "api_version"),
    ("{kind: azure, account: acmedata, container: scans, delegation_key_life: 8d}", "delegation_key_life"),
    ("{kind: azure, account: acmedata, container: scans, response_content_type: \"a\\nb\"}", "must be one line"),
])
def test_invalid_backends_are_refused(backend: str, expected: str) -> None:
    problems = _problems(backend)
    assert any(expected in problem for problem in problems), problems


def test_the_account_key_itself_never_goes_in_the_file() -> None:
    policy = parse_policy(_policy("{kind: azure, account: acmedata, container: scans, credential: account_key, "
                                  "account_key_env: AZURE_STORAGE_KEY, endpoint: 'http://127.0.0.1:10000/acmedata/'}"))
    backend = policy.datasets["scans"].backend
    assert isinstance(backend, AzureBackend)
    assert backend.account_key_env == "AZURE_STORAGE_KEY"
    assert backend.blob_endpoint() == "http://127.0.0.1:10000/acmedata"
