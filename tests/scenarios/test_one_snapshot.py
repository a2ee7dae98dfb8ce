"""One request is decided under one policy version (invariant 13): the snapshot is taken at the edge,
and a reload in the middle of the request changes nothing for it.

The request is held inside authentication (the identity provider takes its time to hand out its
keys) while the policy file is replaced; the request then completes under the policy it arrived
under, and says so in its audit record; the next one is decided under the new policy.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from tests.auth.support import Canned, Idp, SigningKey
from tests.scenarios.test_auth_scenario import okta_token
from tests.support import RunningGateway, audit_records

POLICY = """
version: 1
auth:
  oidc: [{{name: okta, issuer: {issuer}, audience: api://default}}]
audit:
  sinks: [{{kind: file, path: {audit}}}]
datasets:
  team:
    backend: {{kind: local, path: {root}}}
    allow_keys: [{allow}]
    rules: [{{name: {rule}, groups: [ml-team], issuers: [okta]}}]
"""


def test_a_reload_in_the_middle_of_a_request_changes_nothing_for_it(
    tmp_path: Path, idp: Idp, idp_key: SigningKey, gateway_server: Callable[..., RunningGateway]
) -> None:
    root = tmp_path / "objects"
    root.mkdir()
    (root / "scan.png").write_bytes(b"png")
    audit = tmp_path / "audit.jsonl"
    config = tmp_path / "policy.yaml"

    def write(rule: str, allow: str) -> None:
        config.write_text(POLICY.format(issuer=idp.issuer, audit=audit, root=root, rule=rule, allow=allow))

    write("before", '"**"')
    gw = gateway_server(config=config, reload_interval=3600)  # reloads only when the test says so
    reloader = gw.app.runtime.reloader
    assert reloader is not None
    first_version = gw.app.runtime.holder.current.version
    # The keys arrive only after 1.5 s: the request waits inside authentication, holding its snapshot.
    idp.canned["/v1/keys"] = Canned(200, json.dumps({"keys": [idp_key.jwk()]}).encode(), delay=1.5)
    bearer = {"Authorization": f"Bearer {okta_token(idp, idp_key)}"}
    answers: list[httpx.Response] = []
    held = threading.Thread(target=lambda: answers.append(
        httpx.get(f"{gw.url}/v1/datasets/team/objects/scan.png", headers={**bearer, "X-Request-ID": "held"},
                  timeout=10)))
    held.start()
    time.sleep(0.5)
    write("after", '"other/**"')  # the new policy would refuse this key
    assert reloader.check_once() is True
    second_version = gw.app.runtime.holder.current.version
    assert second_version != first_version
    held.join(10)
    # Decided wholly under the policy it arrived under: its rule, its allow_keys, its version.
    assert answers[0].status_code == 302, answers[0].text
    later = httpx.get(f"{gw.url}/v1/datasets/team/objects/scan.png", headers={**bearer, "X-Request-ID": "later"},
                      timeout=10)
    assert later.status_code == 403
    records = audit_records(audit, "held", "later")
    assert (records["held"]["rule"], records["held"]["policy"], records["held"]["status"]) == (
        "before", first_version, 302)
    assert (records["later"]["reason"], records["later"]["policy"], records["later"]["status"]) == (
        "key_not_allowed", second_version, 403)
