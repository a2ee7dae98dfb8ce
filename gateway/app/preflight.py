"""What ``gateway serve`` would refuse at startup, checked without starting it and without the
network: for ``gateway check-config`` (part of the composition root, since it uses the same
secret loaders as the state builder).

The policy's own checks (schema, cross-section, ``config/validation.py``) ran when it was loaded.
This adds what depends on the process: the settings, and the secrets and addresses that serve reads
from the environment at startup. A check-config run in CI does not hold the production secrets, so a
secret that is *absent* here is a note (serve reads it at startup, and refuses to start without it);
a secret that is present and unusable (empty, too short) is a problem, as it is for serve.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from gateway.auth.browser_client import load_client_secret
from gateway.auth.replay import MemoryReplayStore
from gateway.auth.vendor import VendorAuthenticator
from gateway.config import PolicyFile, origin_of
from gateway.config.validation import state_problems, warnings
from gateway.errors import ConfigError
from gateway.settings import Settings, is_loopback_host

AT_STARTUP = "gateway serve reads it from the environment at startup, and refuses to start without it"


@dataclass
class Preflight:
    problems: list[str] = field(default_factory=list)  # serve would refuse to start
    notes: list[str] = field(default_factory=list)  # depends on what the serving environment holds
    warnings: list[str] = field(default_factory=list)  # valid, and worth knowing


def _present(name: str | None, environ: Mapping[str, str]) -> bool:
    return name is not None and bool(environ.get(name, "").strip())


def _vendor_secrets(policy: PolicyFile, environ: Mapping[str, str], out: Preflight) -> None:
    """The vendor HMAC secrets, loaded by the authenticator serve uses (same rules, same messages)."""
    absent = []
    for v, vendor in enumerate(policy.auth.vendors):
        for k, key in enumerate(vendor.keys):
            where = f"auth.vendors.{v}.keys.{k}"
            if key.secret_env is not None and not _present(key.secret_env, environ):
                absent.append(where)
                out.notes.append(f"{where}.secret_env: {key.secret_env} is not set here; {AT_STARTUP}")
            elif key.secret_file is not None and not key.secret_file.exists():
                absent.append(where)
                out.notes.append(f"{where}.secret_file: {key.secret_file} does not exist here; gateway serve reads "
                                 "it at startup, and refuses to start without it")
    if not policy.auth.vendors:
        return
    try:
        VendorAuthenticator(policy.auth.vendors, replay=MemoryReplayStore(), environ=environ)
    except ConfigError as exc:
        out.problems += [p for p in exc.problems if not any(p.startswith(f"{w}.") for w in absent)]


def _browser_sign_in(policy: PolicyFile, settings: Settings, environ: Mapping[str, str], out: Preflight) -> None:
    """What browser sign-in needs from the process (build.StateBuilder.browser_sign_in refuses the same)."""
    if not any(issuer.browser is not None for issuer in policy.auth.oidc):
        return
    if not settings.session_keys:
        out.notes.append(f"browser sign-in needs GATEWAY_SESSION_KEYS, which is not set here; {AT_STARTUP}")
    public = settings.public_url
    if not public:
        out.notes.append(f"browser sign-in needs GATEWAY_PUBLIC_URL, which is not set here; {AT_STARTUP}")
    else:
        origin = origin_of(public)
        if origin is None or not (origin.startswith("https://") or is_loopback_host(urlsplit(origin).hostname or "")):
            out.problems.append("browser sign-in needs GATEWAY_PUBLIC_URL to be the https:// address browsers use")
    for i, issuer in enumerate(policy.auth.oidc):
        if issuer.browser is None:
            continue
        where = f"auth.oidc.{i}.browser"
        browser = issuer.browser
        if browser.client_secret_env is not None and not _present(browser.client_secret_env, environ):
            out.notes.append(f"{where}.client_secret_env: {browser.client_secret_env} is not set here; {AT_STARTUP}")
        elif browser.client_secret_file is not None and not browser.client_secret_file.exists():
            out.notes.append(f"{where}.client_secret_file: {browser.client_secret_file} does not exist here; "
                             "gateway serve reads it at startup, and refuses to start without it")
        else:
            _, problem = load_client_secret(browser, environ)
            if problem is not None:
                out.problems.append(f"{where}.{problem}")


def _process(policy: PolicyFile, settings: Settings, environ: Mapping[str, str], out: Preflight) -> None:
    """Settings that serve refuses with this policy, and backends' environment variables."""
    if settings.admin_port is not None and settings.admin_port == settings.port:
        out.problems.append("GATEWAY_ADMIN_PORT must differ from GATEWAY_PORT")
    if settings.dev_principal and not (settings.dev_mode and is_loopback_host(settings.host)):
        out.problems.append("development mode (GATEWAY_DEV_PRINCIPAL) needs GATEWAY_DEV_MODE=true and a loopback "
                            "GATEWAY_HOST")
    if settings.redis_url is None and any(sink.kind == "redis_stream" for sink in policy.audit.sinks):
        out.notes.append(f"audit.sinks: kind redis_stream needs GATEWAY_REDIS_URL, which is not set here; {AT_STARTUP}")
    for name, dataset in policy.datasets.items():
        backend = dataset.backend
        where = f"datasets.{name}.backend"
        if backend.kind == "local" and not backend.path.is_dir():
            out.notes.append(f"{where}.path: {backend.path} is not a folder here; /readyz reports the dataset "
                             "as not ok until it is")
        elif backend.kind == "azure" and backend.account_key_env and not _present(backend.account_key_env, environ):
            out.notes.append(f"{where}.account_key_env: {backend.account_key_env} is not set here; {AT_STARTUP}")
        elif backend.kind == "gcs":
            for variable in (backend.hmac_access_id_env, backend.hmac_secret_env):
                if variable and not _present(variable, environ):
                    out.notes.append(f"{where}: {variable} is not set here; without it at startup the dataset "
                                     "cannot sign (/readyz says why)")


def preflight(policy: PolicyFile, settings: Settings, environ: Mapping[str, str] | None = None) -> Preflight:
    """Every check serve makes of a loaded policy at startup that needs no network (see the module
    docstring), with every problem at once."""
    env = os.environ if environ is None else environ
    out = Preflight(problems=state_problems(policy), warnings=warnings(policy))
    _vendor_secrets(policy, env, out)
    _browser_sign_in(policy, settings, env, out)
    _process(policy, settings, env, out)
    return out
