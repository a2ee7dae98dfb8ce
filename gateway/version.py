"""Which gateway this is: the package version, and the git revision it was built from.

Reviewers ask which code runs; ``gateway --version`` answers. The image records its revision at build
time (``scripts/install-image`` writes ``REVISION`` next to this module); a source checkout asks git.
"""

from __future__ import annotations

import subprocess
from importlib import metadata
from pathlib import Path

DISTRIBUTION = "url-signing-gateway"
_HERE = Path(__file__).resolve().parent


def package_version() -> str:
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


def revision() -> str:
    """The recorded revision, else the checkout's (``+dirty`` when it has changes), else ``unknown``."""
    recorded = _HERE / "REVISION"
    if recorded.is_file():
        return recorded.read_text().strip() or "unknown"
    if not (_HERE.parent / ".git").exists():
        return "unknown"
    try:
        head = _git("rev-parse", "HEAD")
        changes = _git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{head}+dirty" if changes else head


def _git(*args: str) -> str:
    argv = ["git", "-C", str(_HERE.parent), *args]  # fixed arguments; git from PATH, in a source checkout only
    return subprocess.run(argv, capture_output=True, text=True, timeout=5, check=True).stdout.strip()  # noqa: S603


def version_line() -> str:
    return f"gateway {package_version()} (revision {revision()})"
