"""How the gateway reaches Redis: URLs, options, credentials, clients, scripts, Sentinel and probes.

A leaf package: it imports nothing from the gateway but other leaves. The stores (cache, replay,
rate limits, audit stream) use it through ``gateway.redis.client.SharedRedis``.
"""
