"""What the admit step lets in."""

from __future__ import annotations

from typing import NamedTuple

from gateway.models import Decision, Principal
from gateway.policy import CompiledDataset


class Admitted(NamedTuple):
    """What the admit step let in: the use case acts on exactly this."""

    ds: CompiledDataset
    key: str | None  # the canonical key; None for a batch (its keys are checked by :meth:`Gate.keys`)
    principal: Principal
    decision: Decision
    renewal: str | None = None  # a renewed session cookie the answer must carry
    expires: int | None = None  # the URL's expiry, when its own signature was the credential
    prefixes: tuple[str, ...] | None = None  # a capability's key prefixes (None: no such bound)


class KeyVerdict(NamedTuple):
    """One key of a batch: admitted (``key``) or refused (``error``, ``detail``)."""

    position: int
    key: str | None
    error: str | None = None
    detail: str | None = None
