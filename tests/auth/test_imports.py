"""The authenticators depend only on the leaf modules and on gateway.auth (STYLE.md, "Dependencies point one way").

This checks the modules of this suite; the project-wide layering test covers the rest of the package.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import gateway.auth

ALLOWED = {"gateway.config", "gateway.errors", "gateway.models", "gateway.client", "gateway"}
PACKAGE = Path(gateway.auth.__file__).parent


MODULES = ["__init__.py", "client_ip.py", "jwks.py", "oidc.py", "replay.py", "vendor.py"]


@pytest.mark.parametrize("module", [PACKAGE / name for name in MODULES], ids=MODULES)
def test_auth_imports_only_leaves(module: Path) -> None:
    for node in ast.walk(ast.parse(module.read_text(encoding="utf-8"))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "use absolute imports"
            names = [node.module or ""]
        for name in names:
            if name == "gateway" or name.startswith("gateway."):
                assert name in ALLOWED or name == "gateway.auth" or name.startswith("gateway.auth."), name
