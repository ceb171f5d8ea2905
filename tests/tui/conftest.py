"""Shared fixtures for the chat app's tests: chats go to a temporary directory, and ``async def``
tests run on their own event loop (no pytest-asyncio needed)."""

from __future__ import annotations

import asyncio
import inspect
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def chats_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test saves its chats under its own temporary directory, never the user's."""
    directory = tmp_path / "chats"
    monkeypatch.setenv("BLENDIN_CHATS_DIR", str(directory))
    return directory


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    if not inspect.iscoroutinefunction(pyfuncitem.obj):
        return None
    names = pyfuncitem._fixtureinfo.argnames
    kwargs = {name: pyfuncitem.funcargs[name] for name in names}
    asyncio.run(asyncio.wait_for(pyfuncitem.obj(**kwargs), timeout=60))
    return True
