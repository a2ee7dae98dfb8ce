"""The chain itself: how a record is sealed, how a sealed line is taken apart, and the checkpoint record.

A sealed line is the record's JSON extended with ``chain``, ``seq`` and ``prev_hash``, then ``hash``:
the SHA-256 of the previous hash, a newline, and those bytes. Nothing in it is secret, so anyone who can
write the file can also re-seal it from any point on; only a copy of a head kept elsewhere (a
checkpoint, see :mod:`gateway.audit.checkpoint`) shows such a rewrite.
"""

from __future__ import annotations

import hashlib

import orjson

GENESIS = "0" * 64
CHECKPOINT = "checkpoint"  # the ``type`` of a checkpoint record; decision records have no ``type``
REOPEN = "reopen"  # a checkpoint's reason when the destination was reopened (SIGHUP, after logrotate)

_HASH_KEY = b',"hash":"'
_SUFFIX = len(_HASH_KEY) + 64 + 2  # ,"hash":"<64 hex>"}


def digest(prev_hash: str, body: bytes) -> str:
    return hashlib.sha256(prev_hash.encode("ascii") + b"\n" + body).hexdigest()


def sealed_body(line: bytes, claimed: str) -> bytes | None:
    """The bytes that were hashed, cut from the line as written (so that any change to them, even
    to spacing or key order, shows), or None when the line does not end the way a seal ends."""
    if len(line) <= _SUFFIX or line[-_SUFFIX:-66] != _HASH_KEY or line[-2:] != b'"}':
        return None
    if line[-66:-2] != claimed.encode("ascii", "replace"):
        return None
    return line[:-_SUFFIX] + b"}"


class Chain:
    """Links records of one sink in one process.

    The record's JSON is extended in place with ``chain``, ``seq`` and ``prev_hash``; the SHA-256
    of the previous hash and those bytes is appended as ``hash``. A verifier cuts ``hash`` off the
    line and hashes what is left, which gives back exactly the hashed bytes.
    """

    def __init__(self, chain_id: str) -> None:
        self.chain_id = chain_id
        self._chain_json = orjson.dumps(chain_id)
        self.seq = 0
        self.prev_hash = GENESIS

    def seal(self, encoded: bytes) -> bytes:
        """Seal one record, already JSON (an object: its last byte is ``}``)."""
        self.seq += 1
        prev = self.prev_hash.encode("ascii")
        body = b"".join((encoded[:-1], b',"chain":', self._chain_json, b',"seq":', b"%d" % self.seq,
                         b',"prev_hash":"', prev, b'"}'))
        digest_ = hashlib.sha256(b"".join((prev, b"\n", body))).hexdigest()
        self.prev_hash = digest_
        return b"".join((body[:-1], _HASH_KEY, digest_.encode("ascii"), b'"}\n'))

    def state(self) -> tuple[int, str]:
        return self.seq, self.prev_hash

    def restore(self, state: tuple[int, str]) -> None:
        """Undo seals whose lines were never written, so that a failed write leaves no gap."""
        self.seq, self.prev_hash = state


def checkpoint_record(reason: str, of_chain: str, of_seq: int, of_hash: str, now: float, sink: str) -> bytes:
    """A checkpoint: chain ``of_chain`` had reached ``of_seq``, whose hash is ``of_hash``, at ``now``.

    Sealed into a checkpoint destination's own chain it anchors another chain's head; sealed into the
    chain it names (reason ``reopen``, the first record of a reopened file) it marks where a file
    legitimately starts in the middle of a chain.
    """
    return orjson.dumps({"type": CHECKPOINT, "time": now, "reason": reason, "sink": sink, "of_chain": of_chain,
                         "of_seq": of_seq, "of_hash": of_hash})


def is_reopen_marker(record: dict[str, object]) -> bool:
    """The first record of a reopened file: a reopen checkpoint naming the record just before it."""
    return (record.get("type") == CHECKPOINT and record.get("reason") == REOPEN
            and record.get("of_chain") == record.get("chain") and record.get("of_hash") == record.get("prev_hash")
            and isinstance(record.get("seq"), int) and record.get("of_seq") == record["seq"] - 1)  # type: ignore[operator]
