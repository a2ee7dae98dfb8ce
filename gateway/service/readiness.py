"""Readiness: can this process serve, and with everything it should have?"""

from __future__ import annotations

from typing import Any

from gateway.policy import CompiledDataset
from gateway.redis.client import SharedRedis
from gateway.service.state import StateHolder


async def readiness(holder: StateHolder, redis: SharedRedis | None) -> dict[str, Any]:
    """``ready`` while the gateway can serve; ``degraded`` when it serves with less than it should
    (a backend without credentials, a policy file that failed to reload, Redis down)."""
    state = holder.current
    backends = {name: backend.health() for name, backend in state.backends.items()}
    healthy = all(bool(h.get("ok")) for h in backends.values())
    redis_state = "disabled"
    redis_details = None
    if redis is not None:
        # One bounded PING per probe; it is also what closes the breaker again after an outage.
        redis_details = await redis.readiness()
        redis_state = redis_details["state"]
    degraded = not healthy or holder.last_reload_error is not None or redis_state == "down"
    return {
        "status": "degraded" if degraded else "ready",
        "policy_version": state.version,
        "policy_loaded_at": state.loaded_at,
        "last_reload_error": holder.last_reload_error,
        "last_reload_at": holder.last_reload_at,
        "backends": backends,
        "datasets": {name: _delivery(ds) for name, ds in state.policy.datasets.items()},
        "cache": {"memory": "ok", "redis": redis_state},
        "redis": redis_details,
    }


def _delivery(ds: CompiledDataset) -> dict[str, object]:
    """How the dataset's objects reach clients (docs/delivery.md); booleans only, no role or network."""
    backend = ds.config.backend
    bound = getattr(backend, "network_binding", None) is not None
    return {"delivery": "local" if backend.kind == "local" else ds.config.delivery, "network_binding": bound}
