"""What every backend's ``list_page`` shares: the prefix it may be asked for, the page size, and the
names it may hand back.

A listing prefix is checked like a key (it is one, or the start of one): a ``.`` or ``..`` segment in
any encoding, a backslash or a control character is refused before the storage is asked, so a prefix
can never name anything outside the dataset, whatever a storage would make of it. The storage's
answer is held to the dataset's prefix again on the way out (a name that does not start with it is
dropped), and folder markers (names ending in ``/``) are not objects.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TypeVar

from gateway.keys import validate_key

MAX_PAGE = 1000  # every storage's own page limit (S3, GCS, Azure)

T = TypeVar("T")


def check_prefix(prefix: str, max_bytes: int) -> str:
    """``prefix`` relative to the dataset, as given, or InvalidKey. Empty lists the whole dataset; a
    trailing ``/`` is a folder; a partial last segment (``images/ca``) is allowed."""
    if not prefix:
        return prefix
    validate_key(prefix[:-1] if prefix.endswith("/") else prefix, max_bytes)
    return prefix


def page_size(limit: int) -> int:
    """``limit`` within 1..MAX_PAGE: the work of one call is bounded whatever the caller asks."""
    return max(1, min(int(limit), MAX_PAGE))


def relative(names: Iterable[tuple[str, T]], dataset_prefix: str) -> Iterator[tuple[str, T]]:
    """(name relative to the dataset, item) for the storage's objects under the dataset's prefix;
    folder markers and anything outside the prefix are left out."""
    cut = len(dataset_prefix)
    for name, item in names:
        if name.startswith(dataset_prefix) and len(name) > cut and not name.endswith("/"):
            yield name[cut:], item
