"""Native HTTPS: the certificate and key files, checked at startup, and followed while serving.

cert-manager (and certbot, and a Kubernetes Secret update) rewrite the files in place. Every new
TLS handshake stats them (at most once a second); when they changed and the new pair loads, new
connections get it; open connections keep the one they started with, and a pair that does not
load (half-written, mismatched) is logged and the last good one stays in use.
"""

from __future__ import annotations

import logging
import os
import ssl
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gateway.errors import ConfigError

log = logging.getLogger("gateway.app.tls")
CHECK_INTERVAL = 1.0  # seconds between looks at the files, at most
# TLS 1.2 suites: AEAD with forward secrecy only (ECDHE, then AES-GCM or ChaCha20-Poly1305). CBC suites
# (padding oracles: Lucky13, POODLE-style) and static-RSA key exchange (no forward secrecy) are refused.
# TLS 1.3's suites, all AEAD with forward secrecy, are configured apart in OpenSSL and left as they are;
# OpenSSL negotiates the highest version both sides speak, so a TLS 1.3 client always gets TLS 1.3.
TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL:!eNULL"


def load_pair(cert: Path, key: Path) -> ssl.SSLContext:
    """A server context for this pair; ConfigError saying exactly what is wrong with it."""
    files = (("GATEWAY_TLS_CERT", cert), ("GATEWAY_TLS_KEY", key))
    problems = [f"{name} {path}: cannot read it ({_reason(path)})" for name, path in files
                if not os.access(path, os.R_OK)]
    if problems:
        raise ConfigError("TLS", problems)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(TLS12_CIPHERS)
    context.options |= ssl.OP_CIPHER_SERVER_PREFERENCE  # our order (AES-GCM first), not the client's
    try:
        context.load_cert_chain(cert, key)
    except ssl.SSLError as exc:
        # OpenSSL's reason, never the file's contents: "KEY_VALUES_MISMATCH", "NO_START_LINE", ...
        what = "the key does not belong to the certificate" if "MISMATCH" in str(exc) else (
            f"not a PEM certificate and private key ({exc.reason or 'unreadable'})")
        raise ConfigError("TLS", [f"GATEWAY_TLS_CERT {cert} / GATEWAY_TLS_KEY {key}: {what}"]) from None
    return context


def _reason(path: Path) -> str:
    return "no such file" if not path.exists() else "permission denied"


def _stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)  # follows symlinks: Kubernetes swaps a Secret's files through one
    except OSError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns


class FollowedCertificate:
    """uvicorn's ``ssl_context_factory``: the listening context hands every handshake to the context
    of the files as they are now. Picklable, so that each worker process builds its own."""

    def __init__(self, cert: Path, key: Path, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.cert = cert
        self.key = key
        self.clock = clock
        self._state: tuple[tuple[Any, ...], ssl.SSLContext] | None = None
        self._checked = 0.0
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        return {"cert": self.cert, "key": self.key}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["cert"], state["key"])  # type: ignore[misc]

    def __call__(self, config: object, default_factory: Callable[[], ssl.SSLContext]) -> ssl.SSLContext:
        listening = load_pair(self.cert, self.key)
        self._state = ((_stamp(self.cert), _stamp(self.key)), listening)
        listening.sni_callback = self._on_hello  # called for every ClientHello, with or without SNI
        return listening

    def current(self) -> ssl.SSLContext:
        """The context for the files as they are now (checked at most once per CHECK_INTERVAL)."""
        if self._state is None:
            raise RuntimeError("FollowedCertificate was not called as an ssl_context_factory")
        now = self.clock()
        if now - self._checked < CHECK_INTERVAL:
            return self._state[1]
        with self._lock:
            self._checked = now
            stamps = (_stamp(self.cert), _stamp(self.key))
            if stamps != self._state[0]:
                try:
                    self._state = (stamps, load_pair(self.cert, self.key))
                    log.info("TLS certificate reloaded from %s", self.cert)
                except ConfigError as exc:
                    # Mid-rotation the files may not match yet: keep serving the last good pair.
                    log.warning("TLS certificate not reloaded, keeping the previous one: %s", "; ".join(exc.problems))
            return self._state[1]

    def _on_hello(self, connection: ssl.SSLObject, server_name: str | None, listening: ssl.SSLContext) -> None:
        context = self.current()
        if context is not listening:
            connection.context = context
