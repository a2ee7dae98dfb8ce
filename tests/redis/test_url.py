"""GATEWAY_REDIS_URL and the GATEWAY_REDIS_* settings: parsed in full at startup, errors that say what
to change, and never a password in a message, a repr or /readyz."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.app.redis import redis_options, redis_target
from gateway.errors import ConfigError
from gateway.redis.auth import ElastiCacheIamProvider, MemorystoreIamProvider, PasswordFileProvider
from gateway.redis.options import RedisOptions
from gateway.redis.url import RedisTarget, RedisUrlError, parse_redis_url
from gateway.settings import Settings


@pytest.mark.parametrize(("url", "expected"), [
    ("redis://h", RedisTarget("standalone", False, (("h", 6379),))),
    ("rediss://u:p%40ss@h:6380/2", RedisTarget("standalone", True, (("h", 6380),), db=2, username="u",
                                               password="p@ss")),
    ("redis://:pw@[::1]:7000/", RedisTarget("standalone", False, (("::1", 7000),), password="pw")),
    ("unix:///run/redis.sock", RedisTarget("standalone", False, (), unix_path="/run/redis.sock")),
    ("redis+sentinel://:pw@s1,s2:26380/mymaster/3",
     RedisTarget("sentinel", False, (("s1", 26379), ("s2", 26380)), db=3, master="mymaster", password="pw")),
    ("rediss+sentinel://s1/m", RedisTarget("sentinel", True, (("s1", 26379),), master="m")),
    ("redis+cluster://a:7000,b:7001,c/", RedisTarget("cluster", False, (("a", 7000), ("b", 7001), ("c", 6379)))),
    ("rediss+cluster://gw:tok@clustercfg.x.cache.amazonaws.com:6379",
     RedisTarget("cluster", True, (("clustercfg.x.cache.amazonaws.com", 6379),), username="gw", password="tok")),
])
def test_every_scheme_parses(url: str, expected: RedisTarget) -> None:
    assert parse_redis_url(url) == expected


@pytest.mark.parametrize(("url", "message"), [
    ("http://h:6379", "must start with redis://"),
    ("redis+cluster://a:7000/1", "database 0 only"),
    ("redis+sentinel://s1:26379", "names the master"),
    ("redis://a,b/0", "names one server"),
    ("redis://h:notaport/0", "not a number"),
    ("redis://h:70000/0", "out of range"),
    ("redis://h/zero", "must be a number"),
    ("redis://:secret-pw@h/0?socket_timeout=1", "no query string"),
    ("redis+cluster://:secret-pw@/", "empty host"),
])
def test_bad_urls_say_what_to_change_and_never_echo_the_password(url: str, message: str) -> None:
    with pytest.raises(RedisUrlError, match=message) as caught:
        parse_redis_url(url)
    assert "secret-pw" not in str(caught.value)
    with pytest.raises(ConfigError) as refused:
        redis_target(Settings(redis_url=url))
    assert message in str(refused.value) and "secret-pw" not in str(refused.value)


def test_describe_and_repr_hide_the_password() -> None:
    target = parse_redis_url("rediss+cluster://gw:hunter2@a:1,b:2/")
    assert target.describe() == "rediss+cluster://a:1,b:2/"
    assert "hunter2" not in repr(target)
    assert parse_redis_url("redis+sentinel://:hunter2@s:1/m/4").describe() == "redis+sentinel://s:1/m/4"
    options = RedisOptions(password="hunter2", sentinel_password="hunter2")
    assert "hunter2" not in repr(options)


@pytest.mark.parametrize(("settings", "message"), [
    ({"redis_url": "redis://:a@h/0", "redis_password": "b"},
     "given more than once: the URL and GATEWAY_REDIS_PASSWORD"),
    ({"redis_url": "redis://h/0", "redis_password": "b", "redis_password_file": "/x"}, "given more than once"),
    ({"redis_url": "redis://h/0", "redis_auth": "elasticache-iam"}, "GATEWAY_REDIS_IAM_CACHE"),
    ({"redis_url": "redis://h/0", "redis_auth": "elasticache-iam", "redis_iam_cache": "c"}, "GATEWAY_REDIS_USERNAME"),
    ({"redis_url": "redis://h/0", "redis_wait_timeout": 0.5}, "shorter than GATEWAY_REDIS_TIMEOUT"),
])
def test_contradicting_settings_are_refused(settings: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as refused:
        redis_target(Settings(**settings))  # type: ignore[arg-type]
    assert "input_value" not in str(refused.value)  # inputs may be secrets


def test_every_contradiction_is_reported_at_once() -> None:
    with pytest.raises(ConfigError) as refused:
        redis_target(Settings(redis_url="redis://:a@h/0", redis_password="b", redis_wait_timeout=0.5))
    assert len(refused.value.problems) == 2


def test_options_pick_the_credential_provider(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_REGION", "ap-south-1")
    target = parse_redis_url("rediss+cluster://u@a:1/")
    iam = redis_options(Settings(redis_url="rediss+cluster://u@a:1/", redis_auth="elasticache-iam",
                                 redis_iam_cache="c", redis_username="gw"))
    provider = iam.credentials(target)
    assert isinstance(provider, ElastiCacheIamProvider)
    assert (provider.user, provider.region, provider.cache) == ("gw", "ap-south-1", "c")
    memorystore = RedisOptions(auth="memorystore-iam").credentials(target)
    assert isinstance(memorystore, MemorystoreIamProvider)
    password_file = tmp_path / "pw"
    password_file.write_text("from-file\n")
    file_provider = RedisOptions(password_file=password_file).credentials(target)
    assert isinstance(file_provider, PasswordFileProvider) and file_provider.get_credentials() == ("u", "from-file")
    assert RedisOptions().credentials(parse_redis_url("redis://h")) is None
    assert RedisOptions(password="p").credentials(parse_redis_url("redis://h")).get_credentials() == ("p",)  # type: ignore[union-attr]


def test_a_missing_password_file_is_a_clear_authentication_error(tmp_path: Path) -> None:
    from redis.exceptions import AuthenticationError

    with pytest.raises(AuthenticationError, match="cannot read the Redis password file"):
        PasswordFileProvider(tmp_path / "absent").get_credentials()


def test_replica_confirmations_default_to_one_where_a_failover_can_happen() -> None:
    options = RedisOptions()
    assert options.replica_acks(parse_redis_url("redis://h")) == 0
    assert options.replica_acks(parse_redis_url("redis+sentinel://s/m")) == 1
    assert options.replica_acks(parse_redis_url("redis+cluster://a/")) == 1
    assert RedisOptions(wait_replicas=2).replica_acks(parse_redis_url("redis://h")) == 2
