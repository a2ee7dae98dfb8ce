"""What only the local backend's listing has to get right: a walk that never leaves its folder (links
out are not listed, linked folders are not entered, so a link loop cannot hang it), resumes after any
key it is given, and tells the very ETag the file route will send."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from gateway.api.files import entity_tag
from gateway.backends import ListPage
from gateway.backends.local import LocalBackend
from gateway.config import LocalBackend as LocalConfig


def backend(root: Path) -> LocalBackend:
    return LocalBackend(LocalConfig(kind="local", path=root), dataset="d", base_url="http://127.0.0.1:1",
                        signing_key=b"s" * 32)


def listing(target: LocalBackend, prefix: str = "", start: str | None = None, limit: int = 1000) -> ListPage:
    return asyncio.run(target.list_page(prefix, start, limit))


@pytest.fixture
def root(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    (data / "in").mkdir(parents=True)
    (data / "in" / "real.png").write_bytes(b"png")
    (tmp_path / "outside.txt").write_bytes(b"not the dataset's")
    (tmp_path / "outside-dir").mkdir()
    (tmp_path / "outside-dir" / "x.bin").write_bytes(b"not the dataset's")
    os.symlink(tmp_path / "outside.txt", data / "link-out.txt")  # a file outside: not listed
    os.symlink(tmp_path / "outside-dir", data / "dir-out")  # a folder outside: not entered
    os.symlink(data / "in" / "real.png", data / "link-in.png")  # a file inside: listed, as the gateway serves it
    os.symlink(data, data / "in" / "loop")  # a loop: never entered
    os.symlink(data / "in" / "missing", data / "dangling")  # nothing at all
    return data


def test_links_never_lead_out_of_the_folder(root: Path) -> None:
    keys = [obj.key for obj in listing(backend(root)).objects]
    assert keys == ["in/real.png", "link-in.png"]


def test_listed_keys_are_the_files_the_gateway_serves(root: Path) -> None:
    target = backend(root)
    for obj in listing(target).objects:
        path = target.path(obj.key)  # what a signed URL of this key serves
        st = path.stat()
        assert obj.size == st.st_size and obj.modified == st.st_mtime
        assert obj.etag == entity_tag(target.etag_key, path, st.st_size, st.st_mtime_ns)


def test_a_page_resumes_after_any_key(tmp_path: Path) -> None:
    names = ["a-1", "a.txt", "a/b/c", "a/d", "a0", "b/x", "b/y/z"]  # key order: a folder sorts as "name/"
    for name in names:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    target = backend(tmp_path)
    assert [o.key for o in listing(target).objects] == names
    for i, name in enumerate(names):
        assert [o.key for o in listing(target, start=name).objects] == names[i + 1:], name
    # A start that is no key (a page's last key may since have been deleted) resumes where it would sort.
    assert [o.key for o in listing(target, start="a/c").objects] == names[3:]
    assert [o.key for o in listing(target, start="a/b/c", prefix="a/").objects] == ["a/d"]
    first = listing(target, limit=3)
    assert [o.key for o in first.objects] == names[:3] and first.next_token == "a/b/c"
    last = listing(target, start="a0", limit=3)
    assert [o.key for o in last.objects] == names[5:] and last.next_token is None
