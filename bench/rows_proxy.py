"""Proxy delivery's rows: the gateway streaming 256 KB objects from a fast local upstream, next to
nginx ``proxy_pass`` to the same upstream in the same run (target: >= 0.30x nginx); the two async
HTTP clients it could use, each in the smallest possible proxy (how the client was chosen); and 64
connections reading a 50 MB object slowly (target: peak RSS per worker < 200 MB).

The upstream is nginx serving files laid out as an S3 path-style bucket: it ignores the gateway's
SigV4 headers, which is what "fast local upstream" means here (the storage's own cost is not what
these rows measure).
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from pathlib import Path

from bench import fixtures as fx
from bench.harness import Row, Run, expect_status
from bench.load import fixed_paths_script
from bench.procs import BenchError, Server, cmdline, ensure_tool, free_port, reset_peak_rss, running, status_kb

BUCKET, PREFIX, DATASET = "bench-proxy", "p/", "px"
OBJECTS = [f"obj-{i:02d}.bin" for i in range(20)]
OBJECT_BYTES = 256 * 1024
HUGE, HUGE_BYTES = "huge.bin", 50 * 1024 * 1024
SLOW_CONNECTIONS, SLOW_READ, SLOW_TICK = 64, 64 * 1024, 0.1  # each reader takes 64 KiB per 0.1 s


def _nginx_conf(prefix: Path, port: int, workers: int, body: str) -> Path:
    for sub in ("logs", "tmp"):
        (prefix / sub).mkdir(parents=True, exist_ok=True)
    conf = prefix / "nginx.conf"
    conf.write_text(f"""
daemon off;
master_process on;
worker_processes {workers};
pid {prefix}/nginx.pid;
error_log {prefix}/logs/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    server_tokens off;
    client_body_temp_path {prefix}/tmp/body;
    proxy_temp_path {prefix}/tmp/proxy;
    fastcgi_temp_path {prefix}/tmp/fastcgi;
    uwsgi_temp_path {prefix}/tmp/uwsgi;
    scgi_temp_path {prefix}/tmp/scgi;
    keepalive_requests 1000000;
    sendfile on;
{body}
}}
""")
    return conf


def _nginx(run: Run, binary: str, name: str, workers: int, body: str) -> Server:
    prefix = run.tmp / name
    port = free_port()
    conf = _nginx_conf(prefix, port, workers, body.replace("PORT", str(port)))
    return Server(name, [binary, "-p", str(prefix), "-c", str(conf)], port, run.tmp / f"{name}.log",
                  workers=workers, is_worker=lambda pid: "worker process" in cmdline(pid))


def _data(run: Run) -> Path:
    root = run.tmp / "proxy-data"
    folder = root / BUCKET / PREFIX
    folder.mkdir(parents=True, exist_ok=True)
    for name in OBJECTS:
        (folder / name).write_bytes(os.urandom(OBJECT_BYTES))
    with open(folder / HUGE, "wb") as fh:
        block = os.urandom(1 << 20)
        for _ in range(HUGE_BYTES >> 20):
            fh.write(block)
    for path in (run.tmp, root, root / BUCKET, folder):
        path.chmod(0o755)  # nginx's workers run as nobody
    return root


def proxy(run: Run) -> None:
    binary = ensure_tool("nginx", "nginx-light", install=run.o.install)
    names = ("proxy-nginx", "proxy", "proxy-aiohttp", "proxy-httpx", "proxy-slow")
    if binary is None:
        for name in names:
            run.rows.append(Row(name, "proxy delivery", "proxy", status="skipped", reason="nginx is not installed"))
        return
    root = _data(run)
    upstream = _nginx(run, binary, "upstream", run.o.workers,
                      f"    server {{ listen 127.0.0.1:PORT; location / {{ root {root}; }} }}")
    try:
        with running(upstream):
            _rows(run, binary, upstream.port)
    except BenchError as exc:
        for name in names:
            if not any(r.name == name for r in run.rows):
                run.rows.append(Row(name, "proxy delivery", "proxy", status="skipped", reason=str(exc)[:200]))


def _rows(run: Run, binary: str, upstream_port: int) -> None:
    origin = f"http://127.0.0.1:{upstream_port}"
    bucket_paths = [f"/{BUCKET}/{PREFIX}{name}" for name in OBJECTS]
    nginx = _nginx(run, binary, "nginx-proxy", run.o.workers, f"""
    upstream storage {{ server 127.0.0.1:{upstream_port}; keepalive 64; }}
    server {{ listen 127.0.0.1:PORT;
        location / {{ proxy_pass http://storage; proxy_http_version 1.1; proxy_set_header Connection ""; }} }}""")
    row = Row("proxy-nginx", "nginx proxy_pass, 256 KB objects", "proxy")
    with running(nginx) as server:
        expect_status(server.port, bucket_paths[0], {}, 200)
        run.measure(row, server, run.script("proxy-nginx", fixed_paths_script(bucket_paths, {})))
    run.rows.append(row)

    policy = run.tmp / "proxy-policy.yaml"
    policy.write_text(f"""version: 1
datasets:
  {DATASET}:
    delivery: proxy
    backend: {{kind: s3, bucket: {BUCKET}, prefix: {PREFIX}, endpoint_url: "{origin}", addressing_style: path}}
    rules: [{{name: bench, anonymous: true, networks: [127.0.0.0/8]}}]
""")
    gateway = run.gateway_server("gateway-proxy", policy, "", GATEWAY_REDIS_URL="")
    row = Row("proxy", "gateway delivery: proxy, 256 KB objects (S3 SigV4 headers)", "proxy")
    paths = [fx.objects_path(DATASET, name) for name in OBJECTS]
    with running(gateway) as server:
        expect_status(server.port, paths[0], {}, 200)
        run.measure(row, server, run.script("proxy", fixed_paths_script(paths, {})))
        run.rows.append(row)
        slow(run, server)

    for client in ("aiohttp", "httpx"):
        row = Row(f"proxy-{client}", f"bare streaming proxy with {client} (no auth, no policy)", "proxy")
        env = {**fx.env_without("PROXY_"), "PROXY_UPSTREAM": origin, "PROXY_CLIENT": client}
        with running(run.uvicorn_server(f"proxy-{client}", "bench.baselines.proxy_client:app", env)) as server:
            expect_status(server.port, bucket_paths[0], {}, 200)
            run.measure(row, server, run.script(f"proxy-{client}", fixed_paths_script(bucket_paths, {})))
        run.rows.append(row)


def slow(run: Run, server: Server) -> None:
    """64 connections each reading the 50 MB object at 640 KB/s; peak RSS of every worker."""
    row = Row("proxy-slow", f"gateway proxy, {SLOW_CONNECTIONS} slow readers of a 50 MB object", "proxy")
    workers = server.worker_pids()
    row.peak_rss_cumulative = not all([reset_peak_rss(pid) for pid in workers])
    seconds = run.o.seconds
    answers = asyncio.run(_slow_readers(server.port, fx.objects_path(DATASET, HUGE), seconds))
    received = [got for got, _ in answers]
    refused = sorted({status for _, status in answers if status != "200"})
    if refused:  # a refusal is a few bytes: the row would measure nothing and look fine
        row.status, row.reason = "invalid", f"the slow readers were answered {', '.join(refused)}, not 200"
    row.peak_rss_kb = [status_kb(pid, "VmHWM") or 0 for pid in workers]
    row.extra.update(connections=SLOW_CONNECTIONS, seconds=seconds, mb_received=round(sum(received) / 2**20, 1),
                     readers_that_got_data=sum(1 for r in received if r > 0))
    run.log(f"proxy-slow: {row.extra['mb_received']} MB to {row.extra['readers_that_got_data']} readers, "
            f"peak RSS {[kb // 1024 for kb in row.peak_rss_kb]} MB")
    run.rows.append(row)


async def _slow_readers(port: int, path: str, seconds: float) -> list[tuple[int, str]]:
    """(bytes received, the answer's status code) of each slow reader."""

    async def reader() -> tuple[int, str]:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SLOW_READ)
        sock.setblocking(False)
        loop = asyncio.get_running_loop()
        await loop.sock_connect(sock, ("127.0.0.1", port))
        # The Host must be one the gateway answers for (GATEWAY_ALLOWED_HOSTS: loopback names here).
        await loop.sock_sendall(sock, f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
        got, status, deadline = 0, "", time.monotonic() + seconds
        try:
            while time.monotonic() < deadline:
                chunk = await loop.sock_recv(sock, SLOW_READ)
                if not chunk:
                    break
                if not status:
                    status = chunk[9:12].decode("latin-1")  # b"HTTP/1.1 200 OK"
                got += len(chunk)
                await asyncio.sleep(SLOW_TICK)
        finally:
            sock.close()
        return got, status or "no answer"

    return list(await asyncio.gather(*(reader() for _ in range(SLOW_CONNECTIONS))))
