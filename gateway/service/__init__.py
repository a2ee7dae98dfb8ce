"""The service layer: authenticate, decide, sign, audit. No HTTP types, so the CLI and tests call it directly."""

from gateway.service.core import BatchItem, GatewayService, LocalFile
from gateway.service.state import State, StateHolder

__all__ = ["BatchItem", "GatewayService", "LocalFile", "State", "StateHolder"]
