"""Shared fixtures for the end-to-end tests: a data folder and a gateway on a real socket."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.app import create_app
from gateway.settings import Settings
from tests.e2e.helpers import png_2x2
from tests.support import RunningGateway, free_port, serve_app

A_BIN = bytes(range(256)) * 4  # 1024 bytes


def make_data_dir(root: Path) -> Path:
    data = root / "data"
    (data / "nested").mkdir(parents=True)
    (data / "a.bin").write_bytes(A_BIN)
    (data / "hello.txt").write_bytes(b"hello, gateway\n")
    (data / "empty.bin").write_bytes(b"")
    (data / "cloud.pcd").write_bytes(b"# .PCD v0.7\nVERSION 0.7\nFIELDS x y z\nPOINTS 1\nDATA ascii\n1 2 3\n")
    (data / "tiny.png").write_bytes(png_2x2())
    (data / "nested" / "\u00fc \u00f1.bin").write_bytes(b"unicode key")
    (root / "outside.txt").write_bytes(b"TOP SECRET outside the data folder")
    os.symlink(root / "outside.txt", data / "link.txt")
    return data


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_data_dir(tmp_path_factory.mktemp("e2e"))


@pytest.fixture(scope="module")
def shared_gateway(data_dir: Path) -> Iterator[RunningGateway]:
    """One embedded-default gateway per module (local dataset, loopback only, no CORS)."""
    port = free_port()
    app = create_app(Settings(port=port, local_dir=data_dir, signing_key="s" * 32))
    with serve_app(app, port) as running:
        yield running
