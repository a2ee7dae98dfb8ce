"""Fixtures for browser tests: one test CA per session, and one browser per module and engine.

``browser`` is parametrized over chromium, firefox and webkit and scoped to the module, so pytest runs
a module's tests engine by engine and starts each browser once (a page costs well under a second, a
start one to seven seconds). Pages share the browser's cookie jar: a test that needs a clean jar uses
cookie names of its own, or ``open_browser`` for a browser of its own.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.browsers.harness import BROWSERS, Browser, open_browser
from tests.browsers.tls import TestCA


@pytest.fixture(scope="session")
def ca(tmp_path_factory: pytest.TempPathFactory) -> TestCA:
    return TestCA.create(tmp_path_factory.mktemp("test-ca"))


@pytest.fixture(scope="module", params=BROWSERS)
def browser(request: pytest.FixtureRequest, ca: TestCA) -> Iterator[Browser]:
    with open_browser(request.param, ca=ca) as running:
        yield running
