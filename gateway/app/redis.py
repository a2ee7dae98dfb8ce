"""The settings' Redis (part of the composition root): the URL and the ``GATEWAY_REDIS_*`` settings
checked together, every contradiction at once, and turned into one :class:`SharedRedis`.

The redis package knows nothing of the settings; this adapter is the only place that reads both.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from gateway.errors import ConfigError
from gateway.redis.auth import region_from_environment
from gateway.redis.client import SharedRedis
from gateway.redis.options import RedisOptions
from gateway.redis.url import RedisTarget, RedisUrlError, parse_redis_url
from gateway.settings import Settings


def redis_target(settings: Settings) -> RedisTarget | None:
    """The parsed GATEWAY_REDIS_URL (None without one), once its settings agree; ConfigError
    otherwise, listing every problem and never echoing a secret."""
    if not settings.redis_url:
        return None
    try:
        target = parse_redis_url(settings.redis_url)
    except RedisUrlError as exc:  # the message never holds the password
        raise ConfigError("GATEWAY_REDIS_URL", [str(exc)]) from None
    problems = []
    sources = [name for name, present in (
        ("the URL", target.password is not None),
        ("GATEWAY_REDIS_PASSWORD", settings.redis_password is not None),
        ("GATEWAY_REDIS_PASSWORD_FILE", settings.redis_password_file is not None),
        ("GATEWAY_REDIS_AUTH=" + settings.redis_auth, settings.redis_auth != "password"),
    ) if present]
    if len(sources) > 1:
        problems.append("the Redis password is given more than once: " + " and ".join(sources))
    if settings.redis_auth == "elasticache-iam":
        if not (settings.redis_username or target.username):
            problems.append("GATEWAY_REDIS_AUTH=elasticache-iam needs its IAM user (GATEWAY_REDIS_USERNAME)")
        if not settings.redis_iam_cache:
            problems.append("GATEWAY_REDIS_AUTH=elasticache-iam needs GATEWAY_REDIS_IAM_CACHE (the cache's name)")
    if settings.redis_wait_timeout >= settings.redis_timeout:
        problems.append("GATEWAY_REDIS_WAIT_TIMEOUT must be shorter than GATEWAY_REDIS_TIMEOUT")
    if problems:
        raise ConfigError("GATEWAY_REDIS_*", problems)
    return target


def redis_options(settings: Settings, environ: Mapping[str, str] | None = None) -> RedisOptions:
    return RedisOptions(
        connect_timeout=settings.redis_connect_timeout,
        timeout=settings.redis_timeout,
        ca_file=settings.redis_ca_file,
        username=settings.redis_username,
        password=settings.redis_password.get_secret_value() if settings.redis_password else None,
        password_file=settings.redis_password_file,
        sentinel_password=(settings.redis_sentinel_password.get_secret_value()
                           if settings.redis_sentinel_password else None),
        auth=settings.redis_auth,
        iam_cache=settings.redis_iam_cache,
        iam_region=settings.redis_iam_region or region_from_environment(dict(environ) if environ is not None else None),
        iam_serverless=settings.redis_iam_serverless,
        wait_replicas=settings.redis_wait_replicas,
        wait_timeout=settings.redis_wait_timeout,
        read_from_replicas=settings.redis_read_from_replicas,
    )


def shared_redis(settings: Settings, *, on_error: Callable[[], None] = lambda: None,
                 environ: Mapping[str, str] | None = None) -> SharedRedis | None:
    """The one SharedRedis of this process, or None when GATEWAY_REDIS_URL is not set."""
    if redis_target(settings) is None:
        return None
    assert settings.redis_url is not None  # noqa: S101 - redis_target checked it
    return SharedRedis(settings.redis_url, prefix=settings.redis_prefix, on_error=on_error,
                       options=redis_options(settings, environ))
