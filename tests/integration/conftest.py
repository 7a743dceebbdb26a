"""Fixtures shared by the integration tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.fakes.webhdfs import FakeWebHDFS


@pytest.fixture
async def fs() -> AsyncIterator[FakeWebHDFS]:
    """A strict fake WebHDFS (NameNode and DataNode) on a local port, for this test only."""
    async with FakeWebHDFS(strict=True) as fake:
        yield fake
