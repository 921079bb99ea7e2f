"""``/_sim/…``: drive the simulator over HTTP, for tests that run it in another process.

Plain JSON (no PixVerse envelope), no API key: the simulator is a loopback test tool.

- ``GET /_sim/state`` — accounts, job statuses, request count, webhook attempts, queued
  faults, config
- ``POST /_sim/faults`` ``{"route", "kind", "count"?, "retry_after"?, "seconds"?, "err_code"?,
  "message"?}`` — queue a fault; ``DELETE /_sim/faults`` — clear them all
- ``POST /_sim/config`` ``{"gen_time"?, "gen_time_range"?, "failure_rate"?, "max_concurrent"?,
  "video_size_bytes"?, "stale_get"?, "slot_release_after"?, "webhook_loss_rate"?,
  "webhook_late_rate"?, "webhook_late_delay"?, "price_overrides"?}`` — change behaviour from now on
- ``POST /_sim/jobs/{video_id}`` ``{"status": int}`` or ``{"finish": true}``
- ``POST /_sim/balance`` ``{"credits": int}`` — the account's credits from now on (0: every
  generate answers 500090 until it is raised again)
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from bot.simulator.faults import Fault
from bot.simulator.handlers import STATE

CONTROL_PREFIX = "sim_"  # route names of control endpoints, skipped by the API middleware
_TUNABLE = frozenset(
    {
        "gen_time",
        "gen_time_range",
        "failure_rate",
        "max_concurrent",
        "video_size_bytes",
        "stale_get",
        "slot_release_after",
        "webhook_loss_rate",
        "webhook_late_rate",
        "webhook_late_delay",
        "price_overrides",
    }
)


def _bad(message: str) -> web.HTTPBadRequest:
    return web.HTTPBadRequest(text=json.dumps({"error": message}), content_type="application/json")


async def _object(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        raise _bad("body is not JSON") from None
    if not isinstance(body, dict):
        raise _bad("body must be a JSON object")
    return body


async def state_view(request: web.Request) -> web.Response:
    state = request.app[STATE]
    now = state.clock()
    accounts = []
    for account in state.accounts.values():
        state.settle(account)
        accounts.append(
            {
                "account_id": account.account_id,
                "credit_monthly": account.credit_monthly,
                "credit_package": account.credit_package,
                "generating": state.generating(account),
            }
        )
    config = state.config.model_dump(mode="json", include=set(_TUNABLE))
    return web.json_response(
        {
            "accounts": accounts,
            "jobs": {str(vid): job.status(now) for vid, job in state.jobs.items()},
            "requests": len(state.requests),
            "webhooks": [
                {
                    "video_id": hook.video_id,
                    "status": hook.status,
                    "attempt": hook.attempt,
                    "reply_status": hook.reply_status,
                    "ok": hook.ok,
                }
                for hook in state.webhooks
            ],
            "faults": state.faults.pending(),
            "config": config,
        }
    )


async def add_fault(request: web.Request) -> web.Response:
    try:
        route, fault, count = Fault.from_json(await _object(request))
    except ValueError as exc:
        raise _bad(str(exc)) from None
    request.app[STATE].faults.add(route, fault, count)
    return web.json_response({"ok": True, "faults": request.app[STATE].faults.pending()})


async def clear_faults(request: web.Request) -> web.Response:
    request.app[STATE].faults.clear()
    return web.json_response({"ok": True})


async def set_config(request: web.Request) -> web.Response:
    body = await _object(request)
    unknown = set(body) - _TUNABLE
    if unknown:
        raise _bad(f"not tunable: {', '.join(sorted(unknown))}")
    config = request.app[STATE].config
    try:
        for name, value in body.items():
            setattr(config, name, value)  # validate_assignment checks each value
    except ValidationError as exc:
        raise _bad(f"invalid value: {exc.errors()[0]['msg']}") from None
    return web.json_response({"ok": True, "config": config.model_dump(include=set(_TUNABLE))})


async def drive_job(request: web.Request) -> web.Response:
    state = request.app[STATE]
    try:
        video_id = int(request.match_info["video_id"])
    except ValueError:
        raise _bad("video id must be an integer") from None
    if video_id not in state.jobs:
        raise web.HTTPNotFound(text='{"error": "no such job"}', content_type="application/json")
    body = await _object(request)
    if body.get("finish") is True:
        state.finish_now(video_id)
    elif isinstance(body.get("status"), int) and not isinstance(body["status"], bool):
        state.force_status(video_id, body["status"])
    else:
        raise _bad('send {"status": <int>} or {"finish": true}')
    return web.json_response({"ok": True, "status": state.jobs[video_id].status(state.clock())})


async def set_balance(request: web.Request) -> web.Response:
    body = await _object(request)
    credits = body.get("credits")
    if not isinstance(credits, int) or isinstance(credits, bool) or credits < 0:
        raise _bad('send {"credits": <int >= 0>}')
    state = request.app[STATE]
    state.set_credits(credits)
    return web.json_response({"ok": True, "credits": credits})


def add_control_routes(app: web.Application) -> None:
    app.router.add_get("/_sim/state", state_view, name="sim_state")
    app.router.add_post("/_sim/faults", add_fault, name="sim_add_fault")
    app.router.add_delete("/_sim/faults", clear_faults, name="sim_clear_faults")
    app.router.add_post("/_sim/config", set_config, name="sim_config")
    app.router.add_post("/_sim/jobs/{video_id}", drive_job, name="sim_job")
    app.router.add_post("/_sim/balance", set_balance, name="sim_balance")
