"""What only the in-process URL cache does: it drops a stale entry at once, holds at most
``max_entries`` (least recently used out first), and keeps its entries out of the garbage
collector's reach; and servers collect young objects less often.

The signed-URL cache contract itself (what was put is served, never with less than the minimum
remaining life, a put replaces) is one suite, run against this cache and every Redis topology, in
tests/redis/test_contracts.py."""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.cache.memory import MemoryUrlCache
from gateway.models import SignedUrl
from tests.support import free_port

ROOT = Path(__file__).resolve().parents[2]


def url(name: str, *, signed_at: float = 1000.0, lifetime: float = 100.0) -> SignedUrl:
    return SignedUrl(f"https://store.example/{name}?sig=x", signed_at + lifetime, signed_at)


def test_a_stale_entry_is_dropped_not_kept() -> None:
    cache = MemoryUrlCache(10)
    cache.put("a", url("a", signed_at=1000.0, lifetime=100.0))
    cache.put("b", url("b", signed_at=1000.0, lifetime=100.0))
    assert cache.get("a", now=1060.0, min_remaining=50.0) is None
    # Once found too old it is gone, even for a caller that would accept less life.
    assert cache.get("a", now=1060.0, min_remaining=1.0) is None
    assert cache.get("b", now=1060.0, min_remaining=1.0) is not None
    assert len(cache) == 1


def test_the_cache_is_bounded_and_evicts_the_least_recently_used() -> None:
    cache = MemoryUrlCache(3)
    for name in "abc":
        cache.put(name, url(name))
    assert cache.get("a", now=1000.0, min_remaining=1) is not None  # a is now the most recent
    cache.put("d", url("d"))  # evicts b, the least recently used
    present = {name for name in "abcd" if cache.get(name, now=1000.0, min_remaining=1) is not None}
    assert present == {"a", "c", "d"}
    for i in range(100):
        cache.put(f"k{i}", url(f"k{i}"))
    assert len(cache) == 3
    assert {f"k{i}" for i in range(100) if cache.get(f"k{i}", now=1000.0, min_remaining=1)} == {"k97", "k98", "k99"}


def test_a_full_memory_cache_adds_nothing_to_a_garbage_collection() -> None:
    """Entries the cyclic collector does not track: 100,000 cached URLs must not lengthen every
    full collection (they did, by about 100 ms, while entries were SignedUrl objects)."""
    cache = MemoryUrlCache(1000)
    for i in range(1000):
        cache.put(f"k{i}", SignedUrl(f"https://s3.example/k{i}?X-Amz-Signature={i}", 2000.0 + i, 1000.0))
    gc.collect()  # tuples of atoms are untracked at the first collection that sees them
    tracked = [key for key, entry in cache._entries.items() if gc.is_tracked(entry)]
    assert tracked == []
    url = cache.get("k7", now=1500.0, min_remaining=0)
    assert url == SignedUrl("https://s3.example/k7?X-Amz-Signature=7", 2007.0, 1000.0)


# A server as it starts: `gateway serve` in one process (report once its port is open, then stop), or
# one worker of several (gateway.app:app_from_env, what uvicorn calls in each worker process).
SERVER = """
import gc, json, os, signal, socket, sys, threading, time
mode, port, folder = sys.argv[1], int(sys.argv[2]), sys.argv[3]
before = [list(gc.get_threshold()), gc.get_freeze_count()]

def report():
    print(json.dumps({"before": before, "after": [list(gc.get_threshold()), gc.get_freeze_count()]}), flush=True)

if mode == "worker":
    os.environ.update(GATEWAY_LOCAL_DIR=folder, GATEWAY_PORT=str(port), GATEWAY_SIGNING_KEY="k" * 32)
    from gateway.app import app_from_env
    app_from_env()
    report()
else:
    from gateway.app.serving import serve
    from gateway.settings import Settings

    def watch():
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        report()
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=watch, daemon=True).start()
    serve(Settings(local_dir=folder, port=port, signing_key="k" * 32))
"""


@pytest.mark.parametrize("mode", ["serve", "worker"])
def test_servers_collect_young_objects_less_often(mode: str, tmp_path: Path) -> None:
    """Both ways a server starts freeze the startup heap and raise the young generation's threshold."""
    from gateway.app import SERVER_GC_THRESHOLDS

    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    child = subprocess.run([sys.executable, "-c", SERVER, mode, str(free_port()), str(tmp_path)], cwd=ROOT, env=env,
                           capture_output=True, text=True, timeout=60, check=False)
    assert child.stdout, child.stderr[-2000:]  # (uvicorn ends on the SIGINT it was sent: no exit code to check)
    state = json.loads(child.stdout.strip().splitlines()[-1])
    (threshold_before, frozen_before), (threshold, frozen) = state["before"], state["after"]
    assert tuple(threshold) == SERVER_GC_THRESHOLDS
    assert threshold[0] > threshold_before[0]  # young objects are collected less often than by default
    assert frozen > frozen_before == 0
