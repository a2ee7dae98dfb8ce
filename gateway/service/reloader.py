"""Hot reload: poll the policy file, validate the new one in full, then swap it in atomically."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable
from pathlib import Path

from gateway.config import PolicyFile, load_policy
from gateway.errors import ConfigError
from gateway.metrics import Metrics
from gateway.service.state import State, StateHolder

log = logging.getLogger("gateway.reload")

StateBuilder = Callable[[PolicyFile, bytes, State | None], State]


class PolicyReloader:
    """Reads the file every ``interval`` seconds and compares its hash (Kubernetes swaps a
    ConfigMap's files through a symlink, so the hash is what tells, not the path).

    An invalid file never replaces a valid policy: the error is logged, counted, and shown in
    ``/readyz`` until a valid file arrives.
    """

    def __init__(self, path: Path, holder: StateHolder, build: StateBuilder, metrics: Metrics,
                 *, interval: float = 2.0) -> None:
        self.path = path
        self.holder = holder
        self.build = build
        self.metrics = metrics
        self.interval = interval
        self._digest: str | None = None  # the last file seen, valid or not
        self._in_force: str | None = None  # the file the policy in force came from

    def mark_loaded(self, raw: bytes) -> None:
        self._digest = self._in_force = hashlib.sha256(raw).hexdigest()

    def check_once(self) -> bool:
        """One poll. Returns True when a new policy was swapped in. Blocking: run it off the loop."""
        try:
            raw = self.path.read_bytes()
        except OSError as exc:
            return self._fail(f"{self.path}: cannot read the file: {exc.strerror or exc}", digest=None)
        digest = hashlib.sha256(raw).hexdigest()
        if digest == self._in_force and self.holder.last_reload_error is not None:
            # The file in force is back (e.g. after a half-finished ConfigMap swap): nothing to load.
            self._digest = digest
            self.holder.last_reload_error = None
            self.metrics.policy_reload_failing.set(0)
            log.info("policy file restored; version %s stays in force", self.holder.current.version)
            return False
        if digest == self._digest:
            return False
        try:
            policy, raw = load_policy(self.path)
            state = self.build(policy, raw, self.holder.current)
        except ConfigError as exc:
            return self._fail(f"{exc.source}: " + "; ".join(exc.problems), digest=digest)
        self.holder.swap(state)
        self.holder.last_reload_at = time.time()
        self._digest = self._in_force = digest
        self.metrics.policy_reloads.labels("success").inc()
        self.metrics.policy_reload_failing.set(0)
        self.metrics.policy_info.set(state.loaded_at)
        log.info("policy reloaded", extra={"policy_version": state.version})
        return True

    def _fail(self, message: str, *, digest: str | None) -> bool:
        # Remember the bad digest so that one broken file is reported once, not every poll.
        if digest is not None:
            self._digest = digest
        if self.holder.last_reload_error != message:
            self.metrics.policy_reloads.labels("error").inc()
            log.error("policy reload failed; keeping version %s: %s", self.holder.current.version, message)
        self.holder.last_reload_error = message
        self.metrics.policy_reload_failing.set(1)
        self.holder.last_reload_at = time.time()
        return False

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await asyncio.to_thread(self.check_once)
            except Exception:  # the reloader must outlive any surprise
                log.exception("policy reload crashed; keeping the current policy")
