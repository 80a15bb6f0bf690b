"""The dashboard app: a slow overview (verifying a large audit log takes seconds) does not
stop it answering, and its JSON is standard JSON."""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

import pytest

from shipml.report.dashboard import Dashboard


async def _get(app: Dashboard, path: str) -> tuple[int, bytes]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app({"type": "http", "method": "GET", "path": path}, receive, send)
    return sent[0]["status"], sent[1]["body"]


def test_health_answers_while_the_overview_is_gathered():
    release = threading.Event()

    def slow() -> dict[str, Any]:
        release.wait(10)
        return {"metric": float("nan")}

    app = Dashboard(slow)

    async def main() -> None:
        page = asyncio.create_task(_get(app, "/api/overview"))
        await asyncio.sleep(0.05)
        # the loop is free: gathered synchronously, this waited for the overview
        assert await asyncio.wait_for(_get(app, "/healthz"), 2) == (200, b"ok")
        release.set()
        status, body = await page
        assert status == 200
        assert json.loads(body, parse_constant=lambda c: pytest.fail(f"JSON has {c}")) == {
            "metric": None
        }

    asyncio.run(main())
