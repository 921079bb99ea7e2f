"""A local PixVerse API (docs/pixverse.md) for trying and testing the bot without credits.

Run it alone with ``python -m bot.simulator --port 8765``, in-process with
``python -m bot --simulate``, or from tests::

    async with Simulator(SimulatorConfig(gen_time=0.2)) as sim:
        client = PixVerseClient(session, base_url=sim.base_url, api_key="any")

A prompt containing ``MODERATION_MARKER`` ends in status 7 (moderation, refunded).
With ``webhook_url`` set it POSTs each job's signed result webhook (``webhooks.py``;
docs/pixverse.md, "Webhooks").
Tests steer it with ``inject_fault``, ``force_status``, ``finish_now`` and ``stale_get``, and
inspect ``requests``, ``generate_requests``, ``jobs``, ``uploads``, ``webhooks`` and
``balance``; tests in another process use the ``/_sim/…`` control endpoints (see
``control.py``).
"""

from __future__ import annotations

from bot.simulator.config import NO_HD, SimulatorConfig
from bot.simulator.faults import Fault, FaultKind, Route
from bot.simulator.server import Simulator, create_app
from bot.simulator.state import (
    MODERATION_MARKER,
    Job,
    RecordedRequest,
    SimState,
    Upload,
    WebhookRecord,
)
from bot.simulator.webhooks import WebhookSender

__all__ = [
    "MODERATION_MARKER",
    "NO_HD",
    "Fault",
    "FaultKind",
    "Job",
    "RecordedRequest",
    "Route",
    "SimState",
    "Simulator",
    "SimulatorConfig",
    "Upload",
    "WebhookRecord",
    "WebhookSender",
    "create_app",
]
