"""The admit step for many keys at once: a batch's keys, a listing's objects."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gateway.errors import (
    InvalidKey,
)
from gateway.keys import validate_key
from gateway.service.admit.base import GateBase
from gateway.service.admit.types import Admitted, KeyVerdict


class KeyChecks(GateBase):
    def keys(self, admitted: Admitted, keys: Sequence[Any]) -> list[KeyVerdict]:
        """A batch's keys, each admitted or refused on its own: one bad key never fails the batch."""
        ds = admitted.ds
        allowed = ds.key_pattern.match
        max_bytes = ds.max_key_bytes
        verdicts = []
        refused = 0
        for i, raw in enumerate(keys):
            if not isinstance(raw, str):
                # Never the value itself, nor its Python text: it may be anything, nested anyhow.
                verdicts.append(KeyVerdict(i, None, "invalid_key", f"key {i} is {_json_type(raw)}, not a string"))
                refused += 1
                continue
            try:
                key = validate_key(raw, max_bytes)
            except InvalidKey as exc:
                # A lone surrogate ("\ud800") cannot be written back as JSON: show it replaced.
                shown = raw.encode("utf-16", "surrogatepass").decode("utf-16", "replace")[:1100]
                verdicts.append(KeyVerdict(i, shown, exc.code, exc.detail))
                refused += 1
                continue
            if allowed(key):
                verdicts.append(KeyVerdict(i, key))
            else:
                verdicts.append(KeyVerdict(i, key, "forbidden", "the policy does not allow this key in this dataset"))
                refused += 1
        self._tally.inc(self._allowed, len(verdicts) - refused)
        if refused:
            self.metrics.decisions.labels("deny", "batch").inc(refused)
        return verdicts


    def listed(self, admitted: Admitted, keys: Sequence[str]) -> list[bool]:
        """Which keys of a listing the caller may see: the dataset's allow_keys, and a capability's
        prefixes (a listing shows nothing its caller could not read)."""
        allowed, prefixes = admitted.ds.key_pattern.match, admitted.prefixes
        return [bool(allowed(key)) and (prefixes is None or key.startswith(prefixes)) for key in keys]



def _json_type(value: object) -> str:
    if isinstance(value, bool):
        return "a boolean"
    return {int: "a number", float: "a number", list: "an array", dict: "an object"}.get(type(value), "null")

