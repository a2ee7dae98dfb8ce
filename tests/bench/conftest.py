from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "bench: the quick benchmark regression guard (runs in the normal suite; -m 'not bench' skips it)"
    )
