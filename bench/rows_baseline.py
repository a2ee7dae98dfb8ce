"""The baselines every gateway row is compared with, in the same run: bare Starlette (the framework's
limit), a naive gateway (what a team writes in an afternoon) and nginx (a C server's ceiling)."""

from __future__ import annotations

import grp
import os
from pathlib import Path

from bench import fixtures as fx
from bench.harness import Row, Run, aws_env, expect_redirect, expect_status
from bench.procs import BenchError, Server, cmdline, ensure_tool, free_port, running


def starlette(run: Run, hot: Path, name: str = "starlette") -> None:
    label = "bare Starlette 302" + (" (again, at the end)" if name != "starlette" else "")
    row = Row(name, label, "baseline")
    with running(run.uvicorn_server("starlette", "bench.baselines.starlette_302:app")) as server:
        expect_redirect(server.port, "/v1/datasets/x/objects/y", {}, "s3.us-west-2.amazonaws.com")
        run.measure(row, server, hot)
    run.rows.append(row)


def naive(run: Run, hot: Path, issuer: str, token: str) -> None:
    row = Row("naive", "naive FastAPI + PyJWT + boto3", "baseline")
    env = {**fx.env_without("AWS_"), **aws_env(run.tmp),
           "NAIVE_ISSUER": issuer, "NAIVE_AUDIENCE": fx.AUDIENCE, "NAIVE_GROUP": fx.GROUP,
           "NAIVE_JWKS_URI": issuer + "/v1/keys", "NAIVE_BUCKET": fx.S3_BUCKET, "NAIVE_PREFIX": fx.S3_PREFIX,
           "NAIVE_ENDPOINT": fx.S3_ENDPOINT}
    with running(run.uvicorn_server("naive", "bench.baselines.naive_gateway:app", env)) as server:
        path = fx.objects_path(fx.S3_DATASET, fx.HOT_KEYS[0])
        expect_redirect(server.port, path, {"Authorization": f"Bearer {token}"},
                        f"{fx.S3_ENDPOINT}{fx.S3_BUCKET}/{fx.S3_PREFIX}{fx.HOT_KEYS[0]}?")
        expect_status(server.port, path, {}, 401)
        run.measure(row, server, hot)
    run.rows.append(row)


def nginx(run: Run, hot: Path) -> None:
    row = Row("nginx", "nginx return 302", "baseline")
    binary = ensure_tool("nginx", "nginx-light", install=run.o.install)
    if binary is None:
        row.status, row.reason = "skipped", "nginx is not installed (apt-get install nginx-light)"
        run.rows.append(row)
        return
    from bench.baselines.starlette_302 import LOCATION

    prefix = run.tmp / "nginx"
    for sub in ("logs", "tmp"):
        (prefix / sub).mkdir(parents=True, exist_ok=True)
    port = free_port()
    user = "user nobody nogroup;" if os.geteuid() == 0 and _group_exists("nogroup") else ""
    conf = prefix / "nginx.conf"
    conf.write_text(f"""
{user}
daemon off;
master_process on;
worker_processes {run.o.workers};
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
    server {{
        listen 127.0.0.1:{port};
        add_header Cache-Control "private, max-age=150" always;
        add_header Referrer-Policy no-referrer always;
        location / {{ return 302 "{LOCATION}"; }}
    }}
}}
""")
    server = Server("nginx", [binary, "-p", str(prefix), "-c", str(conf)], port, run.tmp / "nginx.log",
                    workers=run.o.workers, is_worker=lambda pid: "worker process" in cmdline(pid))
    try:
        with running(server) as srv:
            expect_redirect(srv.port, "/v1/datasets/x/objects/y", {}, "s3.us-west-2.amazonaws.com")
            run.measure(row, srv, hot)
    except BenchError as exc:
        row.status, row.reason = "skipped", f"nginx did not start: {str(exc).splitlines()[0]}"
    run.rows.append(row)


def _group_exists(name: str) -> bool:
    try:
        grp.getgrnam(name)
        return True
    except KeyError:
        return False
