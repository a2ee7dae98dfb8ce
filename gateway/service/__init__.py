"""The service layer: authenticate, decide, sign, audit. No HTTP types, so the CLI and tests call it directly."""

from gateway.service.core import BatchItem, GatewayService, LocalFile
from gateway.service.delivery import Delivery, ProxyReads, ReadRequest
from gateway.service.gateway_urls import GatewayUrls
from gateway.service.state import State, StateHolder

__all__ = ["BatchItem", "Delivery", "GatewayService", "GatewayUrls", "LocalFile", "ProxyReads", "ReadRequest", "State",
           "StateHolder"]
