"""``gateway urls --format VENDOR``: each vendor's import file, held to the schema the vendor publishes.

The facts below were read from each vendor's own documentation (or its SDK's source) and are written
here as JSON Schemas, with where they come from: a manifest that drifts from them fails here, not at
the vendor's import page. Every URL in a manifest is a stable gateway URL, never a storage URL.
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest

BASE = "https://gw.acme.example"
KEYS = ["images/cam front/0001.jpg", "images/caf\u00e9+%.png", "video/drive.mp4", "audio/note.wav",
        "docs/spec.pdf", "lidar/scan.pcd"]

# -- the vendors' published formats, as data ------------------------------------------------------

LABELBOX = {
    "source": "https://docs.labelbox.com/reference/import-image-data (Import image data: row_data required, "
              "https only; global_key optional, unique in the organization; media_type optional); media types: "
              "Labelbox/labelbox-python libs/labelbox/src/labelbox/schema/media_type.py at 42500045dc25",
    "version": "docs as published in 2025; labelbox-python 6.x MediaType",
    "schema": {
        "type": "array",
        "items": {
            "type": "object",
            "required": ["row_data"],
            "additionalProperties": False,  # only the documented keys
            "properties": {
                "row_data": {"type": "string", "pattern": "^https://"},
                "global_key": {"type": "string", "minLength": 1},
                "media_type": {"enum": ["AUDIO", "CONVERSATIONAL", "DICOM", "PDF", "TMS_GEO", "HTML", "IMAGE",
                                        "LLM_PROMPT_CREATION", "LLM_PROMPT_RESPONSE_CREATION", "TMS_SIMPLE", "TEXT",
                                        "VIDEO", "POINT_CLOUD", "LLM"]},
                "metadata_fields": {"type": "array"},
                "attachments": {"type": "array"},
            },
        },
    },
}
LABEL_STUDIO = {
    "source": "HumanSignal/label-studio docs/source/guide/tasks.md, 'Basic Label Studio JSON format' (a list of "
              "tasks; 'data' holds the keys the labeling config's $variables name, and may hold other fields; "
              "annotations and predictions optional; id not required) at 008282787ce5",
    "version": "Label Studio 1.x task format (1.23 in docs/vendors.md's trial)",
    "schema": {
        "type": "array",
        "items": {
            "type": "object",
            "required": ["data"],
            "additionalProperties": False,
            "properties": {
                "data": {"type": "object", "minProperties": 1},
                "annotations": {"type": "array"},
                "predictions": {"type": "array"},
                "id": {"type": "integer"},
            },
        },
    },
}
_ENCORD_ITEM = {"type": "object", "required": ["objectUrl"], "additionalProperties": False, "properties": {
    "objectUrl": {"type": "string", "pattern": "^[^\\s]+$"},  # "The object URLs must not contain any whitespace"
    "title": {"type": "string", "maxLength": 300},  # "file names up to 300 characters"
    "clientMetadata": {"type": "object"},
    "imageMetadata": {"type": "object"}, "videoMetadata": {"type": "object"}, "audioMetadata": {"type": "object"}}}
ENCORD = {
    "source": "https://docs.encord.com/platform-documentation/Index/add-files/index-register-cloud-data (JSON "
              "format: top-level keys videos, audio, image_groups, images, dicom_series; objectUrl per item, title "
              "optional; skip_duplicate_urls makes uploads idempotent); Direct Access: docs.encord.com/"
              "platform-documentation/General/annotate-data-integrations/annotate-direct-access-integration",
    "version": "Encord docs as published in 2025 (Files / Index registration)",
    "schema": {
        "type": "object",
        "additionalProperties": False,
        "minProperties": 2,
        "properties": {
            "images": {"type": "array", "items": _ENCORD_ITEM},
            "videos": {"type": "array", "items": _ENCORD_ITEM},
            "audio": {"type": "array", "items": _ENCORD_ITEM},
            "image_groups": {"type": "array"},
            "dicom_series": {"type": "array"},
            "skip_duplicate_urls": {"type": "boolean"},
        },
    },
}
SCALE = {
    "source": "https://scale.com/docs/self-hosted-data ('upload these via CSV using the attachment_url column "
              "name') and https://scale.com/docs/uploading-data-to-scale (Upload from CSV: a column named "
              "attachment_url or text)",
    "version": "Scale Studio docs as published in 2025",
    "columns": {"required_one_of": ["attachment_url", "text"]},
}


def run_urls(*args: str, stdin: str = "", env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    return subprocess.run([sys.executable, "-m", "gateway", "urls", *args], input=stdin, capture_output=True,
                          text=True, timeout=60, env={**environ, **(env or {})}, check=False)


@pytest.fixture
def policy(tmp_path: Path) -> Path:
    (tmp_path / "d").mkdir()
    path = tmp_path / "policy.yaml"
    path.write_text(f"version: 1\ndatasets:\n  drive:\n    backend: {{kind: local, path: '{tmp_path / 'd'}'}}\n"
                    "    rules: [{name: r, anonymous: true, networks: [127.0.0.0/8]}]\n")
    return path


def manifest(policy: Path, fmt: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return run_urls("drive", "--config", str(policy), "--base-url", BASE, "--format", fmt, *extra,
                    stdin="\n".join(KEYS) + "\n")


def url_of(key: str) -> str:
    from urllib.parse import quote

    return f"{BASE}/v1/datasets/drive/objects/{quote(key, safe='/')}"


def test_labelbox_data_rows(policy: Path) -> None:
    result = manifest(policy, "labelbox", "--id-prefix", "drive/")
    assert result.returncode == 0, result.stderr
    rows: list[dict[str, Any]] = json.loads(result.stdout)
    jsonschema.validate(rows, LABELBOX["schema"])
    assert [row["row_data"] for row in rows] == [url_of(key) for key in KEYS]  # gateway URLs, in input order
    assert [row["global_key"] for row in rows] == ["drive/" + key for key in KEYS]
    assert [row.get("media_type") for row in rows] == ["IMAGE", "IMAGE", "VIDEO", "AUDIO", "PDF", None]
    # Labelbox takes https URLs only: an http gateway is said, not silently written.
    plain = run_urls("drive", "--config", str(policy), "--base-url", "http://gw.local", "--format", "labelbox",
                     stdin="a.png\n")
    assert "https" in plain.stderr


def test_label_studio_tasks(policy: Path) -> None:
    result = manifest(policy, "labelstudio")
    assert result.returncode == 0, result.stderr
    tasks: list[dict[str, Any]] = json.loads(result.stdout)
    jsonschema.validate(tasks, LABEL_STUDIO["schema"])
    assert [task["data"] for task in tasks] == [
        {"image": url_of(KEYS[0]), "key": KEYS[0]}, {"image": url_of(KEYS[1]), "key": KEYS[1]},
        {"video": url_of(KEYS[2]), "key": KEYS[2]}, {"audio": url_of(KEYS[3]), "key": KEYS[3]},
        {"pdf": url_of(KEYS[4]), "key": KEYS[4]}, {"pcd": url_of(KEYS[5]), "key": KEYS[5]}]
    # The labeling config's own variable ($img) wins when given.
    named = json.loads(manifest(policy, "labelstudio", "--data-key", "img").stdout)
    assert {name for task in named for name in task["data"]} == {"img", "key"}


def test_encord_registration_file(policy: Path) -> None:
    result = manifest(policy, "encord")
    assert result.returncode == 1  # the PDF and the point cloud have no array in Encord's file
    upload: dict[str, Any] = json.loads(result.stdout)
    jsonschema.validate(upload, ENCORD["schema"])
    assert upload["skip_duplicate_urls"] is True
    assert upload["images"] == [{"objectUrl": url_of(k), "title": k} for k in KEYS[:2]]
    assert upload["videos"] == [{"objectUrl": url_of(KEYS[2]), "title": KEYS[2]}]
    assert upload["audio"] == [{"objectUrl": url_of(KEYS[3]), "title": KEYS[3]}]
    assert "'docs/spec.pdf'" in result.stderr and "'lidar/scan.pcd'" in result.stderr


def test_scale_csv(policy: Path) -> None:
    result = manifest(policy, "scale")
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    header = set(rows[0])
    assert header & set(SCALE["columns"]["required_one_of"]) and header <= {"attachment_url", "text"}
    assert [row["attachment_url"] for row in rows] == [url_of(key) for key in KEYS]


@pytest.mark.parametrize("fmt", ["labelbox", "labelstudio", "encord", "scale", "json", "csv", "lines"])
def test_bad_keys_are_skipped_and_reported(policy: Path, fmt: str) -> None:
    result = run_urls("drive", "--config", str(policy), "--base-url", BASE, "--format", fmt,
                      stdin="images/good.png\n../escape.png\nimages//double.png\n")
    assert result.returncode == 1
    assert "'../escape.png'" in result.stderr and "'images//double.png'" in result.stderr
    assert url_of("images/good.png") in result.stdout and "escape" not in result.stdout
    assert "double" not in result.stdout
