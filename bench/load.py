"""Load generation with wrk: Lua scripts for each scenario, running wrk, reading its numbers back.

Every script ends with the same ``done`` hook, which prints one ``BENCH_JSON`` line with the totals
and latency percentiles, so that nothing depends on parsing wrk's human-readable output.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

DONE = r"""
local bench_threads = {}
setup = function(thread)
  table.insert(bench_threads, thread)
  thread:set("tid", #bench_threads - 1)
end
done = function(summary, latency, requests)
  local exhausted = 0
  for _, t in ipairs(bench_threads) do exhausted = exhausted + (t:get("exhausted") or 0) end
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,"non_2xx_3xx":%d,"connect_errors":%d,' ..
    '"read_errors":%d,"write_errors":%d,"timeouts":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,' ..
    '"p999_us":%d,"max_us":%d,"mean_us":%.1f,"exhausted_threads":%d}\n',
    summary.requests, summary.duration, summary.bytes, e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9),
    latency.max, latency.mean, exhausted))
end
"""


def _lua_string(text: str) -> str:
    return json.dumps(text)  # a JSON string literal is a valid Lua string literal for ASCII text


def fixed_paths_script(paths: Sequence[str], headers: dict[str, str], method: str = "GET") -> str:
    """Cycle through ``paths`` (each thread starts at its own offset), with fixed headers."""
    lines = [f"wrk.headers[{_lua_string(k)}] = {_lua_string(v)}" for k, v in headers.items()]
    lines.append("local paths = {" + ",".join(_lua_string(p) for p in paths) + "}")
    lines.append(f"""
local reqs = {{}}
local i = 0
init = function(args)
  for k, p in ipairs(paths) do reqs[k] = wrk.format({_lua_string(method)}, p) end
  i = (tid or 0) * 7
end
request = function()
  i = i % #reqs + 1
  return reqs[i]
end
""")
    return "\n".join(lines) + DONE


def unique_paths_script(prefix: str, suffix: str, headers: dict[str, str]) -> str:
    """A new path for every request: ``{prefix}{thread}/{counter}{suffix}``."""
    lines = [f"wrk.headers[{_lua_string(k)}] = {_lua_string(v)}" for k, v in headers.items()]
    lines.append(f"""
local n = 0
local base = ""
init = function(args) base = {_lua_string(prefix)} .. tostring(tid or 0) .. "/" end
request = function()
  n = n + 1
  return wrk.format("GET", base .. n .. {_lua_string(suffix)})
end
""")
    return "\n".join(lines) + DONE


def user_pairs_script(tokens: Sequence[str], prefix: str, suffix: str, keys: int, *, threads: int,
                      start: int = 0, headers: dict[str, str] | None = None) -> str:
    """Many employees, each with their own token, asking for keys nobody asked for just before.

    Request ``p`` (thread ``t`` takes ``p = start + t, start + t + threads, ...``) is made by user
    ``u = p % users`` for key ``(p // users + u * spread) % keys``: no (user, key) pair repeats
    within ``users * keys`` requests, and at any moment the users are spread over the key space
    (user ``u`` reads around key ``u * spread``), so a key comes back only after ``spread * users``
    requests, asked by another user. Keys are ``{prefix}{k:06d}{suffix}``. ``headers`` go on every
    request (what a browser adds, such as ``Sec-Fetch-Mode``).
    """
    spread = max(1, keys // max(1, len(tokens)))
    extra = "".join(f", [{_lua_string(k)}] = {_lua_string(v)}" for k, v in (headers or {}).items())
    return "\n".join([
        "local tokens = {" + ",".join(_lua_string("Bearer " + t) for t in tokens) + "}",
        f"""
local nusers = #tokens
local nkeys = {keys}
local spread = {spread}
local prefix = {_lua_string(prefix)}
local suffix = {_lua_string(suffix)}
local p = 0
init = function(args) p = {start} + (tid or 0) end
request = function()
  local u = p % nusers
  local k = (math.floor(p / nusers) + u * spread) % nkeys
  p = p + {threads}
  return wrk.format("GET", string.format("%s%06d%s", prefix, k, suffix), {{["Authorization"] = tokens[u + 1]{extra}}})
end
"""]) + DONE


def presigned_file_script(data_file: Path, threads: int, fallback_path: str) -> str:
    """Requests read from ``data_file``: one ``path<TAB>name: value<TAB>...`` line per request, each
    usable once (vendor HMAC signatures are single-use). Thread t takes the lines with
    ``index % threads == t``. A thread that runs out stops and flags it; its last request goes to
    ``fallback_path`` (the harness then reports the run as invalid)."""
    return f"""
local reqs = {{}}
local i = 0
init = function(args)
  local t = tid or 0
  local k = 0
  for line in io.lines({_lua_string(str(data_file))}) do
    if k % {threads} == t then
      local fields = {{}}
      for f in string.gmatch(line, "[^\\t]+") do table.insert(fields, f) end
      local headers = {{}}
      for j = 2, #fields do
        local name, value = string.match(fields[j], "^([^:]+): (.*)$")
        headers[name] = value
      end
      table.insert(reqs, wrk.format("GET", fields[1], headers))
    end
    k = k + 1
  end
end
request = function()
  i = i + 1
  if i > #reqs then
    wrk.thread:set("exhausted", 1)
    wrk.thread:stop()
    return wrk.format("GET", {_lua_string(fallback_path)})
  end
  return reqs[i]
end
""" + DONE


@dataclass
class WrkResult:
    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    non_2xx_3xx: int
    socket_errors: int
    exhausted_threads: int
    raw: str

    def as_dict(self) -> dict[str, object]:
        return {k: v for k, v in self.__dict__.items() if k != "raw"}


def run_wrk(wrk: str, url: str, script: Path, *, threads: int, connections: int, seconds: float,
            timeout_s: float = 5.0) -> WrkResult:
    argv = [wrk, f"-t{threads}", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency",
            f"--timeout={timeout_s:g}s", "-s", str(script), url]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 120, check=False)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("BENCH_JSON ")), None)
    if proc.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed (exit {proc.returncode}): {proc.stderr.strip() or proc.stdout[-2000:]}")
    data = json.loads(line.removeprefix("BENCH_JSON "))
    secs = data["duration_us"] / 1e6
    return WrkResult(
        requests=data["requests"], seconds=round(secs, 3), rps=round(data["requests"] / secs, 1),
        p50_ms=data["p50_us"] / 1000, p90_ms=data["p90_us"] / 1000, p99_ms=data["p99_us"] / 1000,
        max_ms=data["max_us"] / 1000, non_2xx_3xx=data["non_2xx_3xx"],
        socket_errors=data["connect_errors"] + data["read_errors"] + data["write_errors"] + data["timeouts"],
        exhausted_threads=data["exhausted_threads"], raw=proc.stdout,
    )


class Sampler:
    """Calls ``sample()`` every ``interval`` seconds in a thread while the block runs."""

    def __init__(self, sample: Callable[[], object], interval: float) -> None:
        self.sample = sample
        self.interval = interval
        self.samples: list[tuple[float, object]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._t0 = 0.0

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.samples.append((round(time.monotonic() - self._t0, 1), self.sample()))

    def __enter__(self) -> Sampler:
        self._t0 = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
