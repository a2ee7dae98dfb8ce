"""The files ``gateway urls`` writes: bare lines, CSV, JSON, and each labeling vendor's own import
format, one object at a time (a manifest of millions of objects never sits in memory).

The vendor formats, as each vendor documents them (docs/vendors.md says which page and version;
tests/cli/test_urls_formats.py holds the facts that were checked):

- **labelbox**: a JSON array of data rows ``{"row_data", "global_key", "media_type"}``; the global
  key is the object key (unique in the Labelbox organization: ``--id-prefix`` keeps two datasets apart).
- **labelstudio**: a JSON array of tasks ``{"data": {<value key>: url, "key": key}}``; the value key
  is the one the labeling config names (``$image``...): by media type, or ``--data-key``.
- **encord**: one JSON object with an array per data type (``images``, ``videos``, ``audio``) of
  ``{"objectUrl", "title"}``, and ``"skip_duplicate_urls": true`` so that a re-import is idempotent.
- **scale**: CSV with the one column Scale Studio's self-hosted data reads, ``attachment_url``.
"""

from __future__ import annotations

import csv
import tempfile
from dataclasses import dataclass
from typing import IO, Protocol

import orjson

FORMATS = ("lines", "csv", "json", "labelbox", "labelstudio", "encord", "scale")
POINT_CLOUDS = frozenset({"application/x-pcd", "application/x-ply", "application/vnd.las", "application/vnd.laszip"})


@dataclass(frozen=True, slots=True)
class Item:
    key: str  # the object key, relative to the dataset
    url: str  # the stable gateway URL (never a storage URL)
    media_type: str  # the storage's, else from the key's suffix


def kind_of(media_type: str) -> str:
    """image, video, audio, text, html, pdf, dicom, pointcloud or other."""
    media = media_type.split(";")[0].strip().lower()
    top = media.split("/")[0]
    if top in ("image", "video", "audio"):
        return top
    if media in POINT_CLOUDS:
        return "pointcloud"
    return {"application/pdf": "pdf", "application/dicom": "dicom", "text/html": "html"}.get(
        media, "text" if top == "text" else "other")


class Writer(Protocol):
    def add(self, item: Item) -> str | None:
        """Write one object; or return why the format has no place for it (it is then skipped)."""
        ...

    def close(self) -> None: ...


class _JsonArray:
    """``[`` rows ``]``, one row a line, written as they come."""

    def __init__(self, out: IO[str]) -> None:
        self.out = out
        self.count = 0
        out.write("[")

    def row(self, value: object) -> None:
        self.out.write(("," if self.count else "") + "\n  " + orjson.dumps(value).decode())
        self.count += 1

    def close(self, end: str = "\n") -> None:
        self.out.write(("\n]" if self.count else "]") + end)


class Lines:
    def __init__(self, out: IO[str]) -> None:
        self.out = out

    def add(self, item: Item) -> str | None:
        self.out.write(item.url + "\n")
        return None

    def close(self) -> None:
        pass


class Table:
    """CSV with a header; ``columns`` picks each row's values."""

    def __init__(self, out: IO[str], header: list[str], *, with_key: bool) -> None:
        self.writer = csv.writer(out, lineterminator="\n")
        self.writer.writerow(header)
        self.with_key = with_key

    def add(self, item: Item) -> str | None:
        self.writer.writerow([item.key, item.url] if self.with_key else [item.url])
        return None

    def close(self) -> None:
        pass


class Plain(_JsonArray):
    def add(self, item: Item) -> str | None:
        self.row({"key": item.key, "url": item.url})
        return None


LABELBOX_MEDIA = {"image": "IMAGE", "video": "VIDEO", "audio": "AUDIO", "text": "TEXT", "html": "HTML",
                  "pdf": "PDF", "dicom": "DICOM"}


class Labelbox(_JsonArray):
    def __init__(self, out: IO[str], id_prefix: str) -> None:
        super().__init__(out)
        self.id_prefix = id_prefix

    def add(self, item: Item) -> str | None:
        row = {"row_data": item.url, "global_key": self.id_prefix + item.key}
        media = LABELBOX_MEDIA.get(kind_of(item.media_type))
        if media is not None:  # optional in Labelbox's format: left out where it names no type of theirs
            row["media_type"] = media
        self.row(row)
        return None


LABEL_STUDIO_KEYS = {"image": "image", "video": "video", "audio": "audio", "text": "text", "html": "html",
                     "pdf": "pdf", "pointcloud": "pcd"}


class LabelStudio(_JsonArray):
    def __init__(self, out: IO[str], data_key: str | None, id_prefix: str) -> None:
        super().__init__(out)
        self.data_key = data_key
        self.id_prefix = id_prefix

    def add(self, item: Item) -> str | None:
        name = self.data_key or LABEL_STUDIO_KEYS.get(kind_of(item.media_type), "url")
        self.row({"data": {name: item.url, "key": self.id_prefix + item.key}})
        return None


ENCORD_ARRAYS = {"image": "images", "video": "videos", "audio": "audio"}


class Encord:
    """One object whose arrays are spooled to temporary files per data type, then joined."""

    def __init__(self, out: IO[str], id_prefix: str) -> None:
        self.out = out
        self.id_prefix = id_prefix
        self.spools: dict[str, tuple[IO[str], _JsonArray]] = {}

    def add(self, item: Item) -> str | None:
        kind = kind_of(item.media_type)
        array = ENCORD_ARRAYS.get(kind)
        if array is None:
            return f"{item.media_type} is not an image, a video or audio: Encord's JSON file has no array for it"
        if array not in self.spools:
            spool = tempfile.TemporaryFile("w+", encoding="utf-8")  # noqa: SIM115 - closed in close()
            self.spools[array] = (spool, _JsonArray(spool))
        self.spools[array][1].row({"objectUrl": item.url, "title": self.id_prefix + item.key})
        return None

    def close(self) -> None:
        self.out.write("{")
        for array in ENCORD_ARRAYS.values():
            if array not in self.spools:
                continue
            spool, rows = self.spools.pop(array)
            rows.close(end="")
            spool.seek(0)
            self.out.write(f"\n{orjson.dumps(array).decode()}: ")
            while chunk := spool.read(1 << 16):
                self.out.write(chunk)
            self.out.write(",")
            spool.close()
        self.out.write('\n"skip_duplicate_urls": true\n}\n')


def make_writer(fmt: str, out: IO[str], *, data_key: str | None = None, id_prefix: str = "") -> Writer:
    match fmt:
        case "lines":
            return Lines(out)
        case "csv":
            return Table(out, ["key", "url"], with_key=True)
        case "json":
            return Plain(out)
        case "labelbox":
            return Labelbox(out, id_prefix)
        case "labelstudio":
            return LabelStudio(out, data_key, id_prefix)
        case "encord":
            return Encord(out, id_prefix)
        case "scale":
            return Table(out, ["attachment_url"], with_key=False)
    raise ValueError(f"unknown format {fmt!r}")
