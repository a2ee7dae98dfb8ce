"""Azure service SAS for one blob, read only: the same URL as azure-storage-blob's ``generate_blob_sas``.

The SDK rebuilds its whole query and decodes the base64 key for every URL (about 55 µs each,
``bench/sign_bench.py``); this signer prepares every part that is equal across a batch once, so a
URL costs one HMAC-SHA256 and one quote (a few µs). ``tests/backends/test_azure_sas.py`` proves
the URLs identical to the SDK's on a property test of keys, for account keys and user delegation keys.

The string-to-sign is a list of fields joined by newlines; which fields, depends on the signed
version ``sv``. Two versions are offered: the SDK's own (``2026-10-06``, whose user-delegation
layout has the ``srh``/``srq`` lines of dynamic user delegation SAS, from ``2026-04-06``), and
``2025-11-05`` for stores that have not caught up (Azurite 3.35 checks exactly that layout).
"""

from __future__ import annotations

import base64
import datetime
import hmac
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

SDK_VERSION = "2026-10-06"
VERSIONS = (SDK_VERSION, "2025-11-05")
_REQUEST_FIELDS_FROM = "2026-04-06"  # user delegation SAS sign srh and srq (empty here) from this version on
STORAGE_SCOPE = "https://storage.azure.com/.default"


def iso(timestamp: float) -> str:
    """A SAS time: UTC, whole seconds, ``Z`` (what the SDK writes for a ``datetime``)."""
    return datetime.datetime.fromtimestamp(int(timestamp), datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _q(value: str) -> str:
    return quote(value)  # the SDK's url_quote: safe="/", so rsct=image/png stays readable


@dataclass(frozen=True, slots=True)
class DelegationKey:
    """A user delegation key as ``get_user_delegation_key`` returns it. ``value`` is secret."""

    oid: str
    tid: str
    start: str  # skt, as the service wrote it
    expiry: str  # ske
    service: str
    version: str
    value: str  # base64
    expires_at: float  # ske in Unix seconds
    delegated_user_tid: str | None = None


class SasSigner:
    """Signs read-only blob SAS URLs under one container, with one set of options.

    ``protocol`` is ``"https"`` or None (both); ``ip`` is a ``sip`` value or None. The key is an
    account key or a :class:`DelegationKey`, passed per call so that a new key needs no new signer.
    """

    def __init__(self, endpoint: str, *, account: str, container: str, version: str = SDK_VERSION,
                 protocol: str | None = None, ip: str | None = None, content_type: str | None = None,
                 content_disposition: str | None = None) -> None:
        if version not in VERSIONS:
            raise ValueError(f"SAS version {version} is not one of {', '.join(VERSIONS)}")
        parts = urlsplit(endpoint.rstrip("/"))
        # The SDK keeps a path in the account URL (Azurite's /devstoreaccount1) as part of the host.
        self.base = f"{parts.scheme}://{parts.netloc}{parts.path}/{quote(container.encode())}/"
        self.version = version
        self._resource = f"/blob/{account}/{container}/"
        self._ip = ip or ""
        self._protocol = protocol or ""
        self._rscd = content_disposition or ""
        self._rsct = content_type or ""
        tail = ["sp=r"]
        tail += [f"sip={_q(ip)}"] if ip else []
        tail += [f"spr={_q(protocol)}"] if protocol else []
        tail += [f"sv={version}", "sr=b"]
        tail += [f"rscd={_q(content_disposition)}"] if content_disposition else []
        tail += [f"rsct={_q(content_type)}"] if content_type else []
        self._query_tail = "&".join(tail)
        self._overrides = "\n".join(["", self._rscd, "", "", self._rsct])  # rscc, rscd, rsce, rscl, rsct

    def _account_fields(self) -> str:
        # si, sip, spr, sv, sr, snapshot, ses, then the response overrides
        return "\n".join(["", self._ip, self._protocol, self.version, "b", "", "", self._overrides])

    def _delegation_fields(self, key: DelegationKey) -> str:
        # skoid..skv, saoid, suoid, scid, skdutid, sduoid, sip, spr, sv, sr, snapshot, ses[, srh, srq], overrides
        fields = [key.oid, key.tid, key.start, key.expiry, key.service, key.version, "", "", "",
                  key.delegated_user_tid or "", "", self._ip, self._protocol, self.version, "b", "", ""]
        if self.version >= _REQUEST_FIELDS_FROM:
            fields += ["", ""]
        return "\n".join([*fields, self._overrides])

    def _delegation_query(self, key: DelegationKey) -> str:
        query = [f"skoid={_q(key.oid)}", f"sktid={_q(key.tid)}", f"skt={_q(key.start)}", f"ske={_q(key.expiry)}",
                 f"sks={_q(key.service)}", f"skv={_q(key.version)}"]
        query += [f"skdutid={_q(key.delegated_user_tid)}"] if key.delegated_user_tid else []
        return "&".join(query)

    def batch(self, key: str | DelegationKey, *, expiry: float) -> SasBatch:
        """Everything but the blob's name, prepared once for URLs that share a key and an expiry."""
        se = iso(expiry)
        if isinstance(key, DelegationKey):
            secret = base64.b64decode(key.value)
            fields = self._delegation_fields(key)
            extra = "&" + self._delegation_query(key)
        else:
            secret = base64.b64decode(key)
            fields = self._account_fields()
            extra = ""
        query = f"?se={_q(se)}&{self._query_tail}{extra}&sig="
        return SasBatch(self.base, secret, f"r\n\n{se}\n{self._resource}", "\n" + fields, query)


@dataclass(frozen=True, slots=True)
class SasBatch:
    base: str
    secret: bytes
    head: str  # sp, st, se and the canonical resource up to the blob's name
    fields: str  # the fields after the canonical resource
    query: str  # the query up to the signature's value

    def url(self, blob: str) -> str:
        digest = hmac.digest(self.secret, f"{self.head}{blob}{self.fields}".encode(), "sha256")
        signature = base64.b64encode(digest).decode("ascii").replace("+", "%2B").replace("=", "%3D")
        return f"{self.base}{quote(blob, safe='~/')}{self.query}{signature}"


def sdk_blob_url(endpoint: str, account: str, container: str, blob: str, *, key: str | DelegationKey, expiry: float,
                 ip: str | None = None, protocol: str | None = None, content_type: str | None = None,
                 content_disposition: str | None = None) -> str:
    """azure-storage-blob's own URL for the same inputs: ``BlobClient.url`` and ``generate_blob_sas``.

    The reference the lean signer is tested and benchmarked against; not for the request path."""
    from azure.storage.blob import BlobClient, UserDelegationKey, generate_blob_sas

    delegation: UserDelegationKey | None = None
    if isinstance(key, DelegationKey):
        delegation = UserDelegationKey()  # type: ignore[no-untyped-call]
        delegation.signed_oid, delegation.signed_tid = key.oid, key.tid
        delegation.signed_start, delegation.signed_expiry = key.start, key.expiry
        delegation.signed_service, delegation.signed_version = key.service, key.version
        delegation.signed_delegated_user_tid, delegation.value = key.delegated_user_tid, key.value
    sas = generate_blob_sas(
        account, container, blob, account_key=None if delegation else str(key), user_delegation_key=delegation,
        permission="r", expiry=datetime.datetime.fromtimestamp(int(expiry), datetime.UTC), ip=ip, protocol=protocol,
        content_type=content_type, content_disposition=content_disposition)
    client = BlobClient(endpoint, container, blob)
    return f"{client.url}?{sas}"
