"""Media types of objects by their key's suffix, for local files and for listings (S3 and Azure
listings do not tell an object's type). The suffixes the gateway's users store come first."""

from __future__ import annotations

import mimetypes
from pathlib import PurePath, PurePosixPath

_TYPES = {
    ".pcd": "application/x-pcd",
    ".ply": "application/x-ply",
    ".bin": "application/octet-stream",
    ".npy": "application/x-npy",
    ".npz": "application/zip",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".webp": "image/webp",
    ".json": "application/json",
    ".gltf": "model/gltf+json",
    ".glb": "model/gltf-binary",
    ".las": "application/vnd.las",
    ".laz": "application/vnd.laszip",
}


def content_type(path: PurePath | str) -> str:
    path = PurePosixPath(path) if isinstance(path, str) else path
    suffix = path.suffix.lower()
    if suffix in _TYPES:
        return _TYPES[suffix]
    guessed, _ = mimetypes.guess_type(path.name)
    return guessed or "application/octet-stream"
