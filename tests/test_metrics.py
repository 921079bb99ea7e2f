"""The metrics room on its own: Discord route templates (no token, no id in a label), the
PixVerse client's observer against the simulator, the job observer's counters, the store's
count of unfinished jobs, and the server's /metrics and /healthz against a stand-in bot.
The whole bot is measured in ``test_e2e_metrics.py``."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace

import aiohttp
import pytest
from conftest import FAST_RUNNER
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from store_fixtures import GUILD, MOD, create, new_job

from bot.jobs.progress import JobUpdate, StatusTarget
from bot.jobs.runner import JobRunner
from bot.metrics import GatewayState, Metrics, MetricsServer, MetricsUnavailable, Sources
from bot.metrics.collect import pixverse_outcome
from bot.metrics.routes import rate_limit_scope, route_template
from bot.pixverse import (
    ConcurrencyLimit,
    InvalidParameters,
    NotFound,
    PixVerseClient,
    TransientError,
    UnreadableAnswer,
)
from bot.pixverse.client import DownloadTooLarge
from bot.service import JobService
from bot.simulator import Simulator, SimulatorConfig
from bot.store import JobKind, JobState, Store

TOKEN = "aW50ZXJhY3Rpb246MTIzNDU2Nzg5MDEyMzQ1Njc4OnNlY3JldC10b2tlbi12YWx1ZQ"
WEBHOOK_TOKEN = "Xy9_abcDEF-ghiJKL_mnoPQR-stuVWX_yz0123456789abcdefghijklmnopqrstuvwx"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def sample(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


# -- Discord routes ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "template"),
    [
        (
            f"/api/v10/interactions/1234567890123456789/{TOKEN}/callback",
            "/interactions/{id}/{token}/callback",
        ),
        (
            f"/api/v10/webhooks/1111111111111111/{WEBHOOK_TOKEN}/messages/@original",
            "/webhooks/{id}/{token}/messages/@original",
        ),
        (
            f"/api/v10/webhooks/1111111111111111/{WEBHOOK_TOKEN}/messages/2222222222222222",
            "/webhooks/{id}/{token}/messages/{id}",
        ),
        # A token that happens to look like a word is still a token by its place.
        ("/api/v10/webhooks/1111/lowercase/messages/@original", "/webhooks/{id}/{token}/messages/@original"),  # noqa: E501
        ("/api/v10/channels/123456789012345678/messages", "/channels/{id}/messages"),
        ("/api/v10/channels/1/messages/2", "/channels/{id}/messages/{id}"),
        ("/api/v10/applications/42/guilds/43/commands", "/applications/{id}/guilds/{id}/commands"),
        ("/api/v10/users/@me", "/users/@me"),
        ("/api/v9/gateway/bot", "/gateway/bot"),
        ("/api", "/"),
        ("/attachments/12/34/cat%20photo.png", "/attachments/{id}/{id}/{param}"),
        ("/api/v10/channels/1/messages/2/reactions/%F0%9F%91%8D/@me", "/channels/{id}/messages/{id}/reactions/{param}/@me"),  # noqa: E501
        ("/api/v10/invites/AbCdEf", "/invites/{param}"),
    ],
)  # fmt: skip
def test_route_template_hides_ids_and_tokens(path: str, template: str) -> None:
    assert route_template(path) == template


def test_route_template_never_keeps_a_token_or_an_id() -> None:
    for path in (
        f"/api/v10/interactions/99/{TOKEN}/callback",
        f"/api/v10/webhooks/99/{WEBHOOK_TOKEN}",
        f"/api/v10/webhooks/99/{WEBHOOK_TOKEN}/messages/@original",
        f"/{TOKEN}",
        f"/api/v10/channels/99/{TOKEN}/x",
    ):
        label = route_template(path)
        assert TOKEN not in label and WEBHOOK_TOKEN not in label and "99" not in label


def test_route_template_cuts_very_deep_paths() -> None:
    label = route_template("/a" * 50)
    assert label.count("/") <= 9 and label.endswith("…")


def test_rate_limit_scope_is_one_of_discords_or_unknown() -> None:
    assert rate_limit_scope("user") == "user"
    assert rate_limit_scope("Global") == "global"
    assert rate_limit_scope("shared") == "shared"
    assert rate_limit_scope(None) == "unknown"
    assert rate_limit_scope(TOKEN) == "unknown"


def test_discord_answers_count_by_route_and_429s_by_scope() -> None:
    metrics = Metrics()
    metrics.discord_answer("patch", "/webhooks/{id}/{token}/messages/@original", 429, "user")
    metrics.discord_answer("patch", "/webhooks/{id}/{token}/messages/@original", 200, None)

    edit = {"method": "PATCH", "route": "/webhooks/{id}/{token}/messages/@original"}
    assert sample(metrics, "pixbot_discord_requests_total", **edit, status="429") == 1
    assert sample(metrics, "pixbot_discord_requests_total", **edit, status="200") == 1
    assert sample(metrics, "pixbot_discord_ratelimited_total", **edit, scope="user") == 1


async def test_discord_trace_counts_a_request_by_its_template() -> None:
    metrics = Metrics()
    port = free_port()

    async def answer(request: aiohttp.web.Request) -> aiohttp.web.Response:
        return aiohttp.web.Response(status=429, headers={"X-RateLimit-Scope": "shared"})

    app = aiohttp.web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    runner = aiohttp.web.AppRunner(app)
    await runner.setup()
    await aiohttp.web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        async with aiohttp.ClientSession(trace_configs=[metrics.discord_trace()]) as session:
            url = f"http://127.0.0.1:{port}/api/v10/interactions/77/{TOKEN}/callback"
            async with session.post(url) as response:
                assert response.status == 429
    finally:
        await runner.cleanup()

    callback = {"method": "POST", "route": "/interactions/{id}/{token}/callback"}
    assert sample(metrics, "pixbot_discord_requests_total", **callback, status="429") == 1
    assert sample(metrics, "pixbot_discord_ratelimited_total", **callback, scope="shared") == 1
    assert TOKEN not in metrics_text(metrics)


def metrics_text(metrics: Metrics) -> str:
    return generate_latest(metrics.registry).decode()


# -- PixVerse ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "outcome", "code"),
    [
        (None, "ok", None),
        (TransientError("busy", code=500069), "transient", "500069"),
        (TransientError("5xx", http_status=502), "transient", "http_502"),
        (UnreadableAnswer("cut", http_status=200), "unreadable", "http_200"),
        (ConcurrencyLimit("full", code=500044), "busy", "500044"),
        (InvalidParameters("no", code=400017), "invalid_parameters", "400017"),
        (NotFound("gone", code=500008), "not_found", "500008"),
        (TimeoutError(), "timeout", "timeout"),
        (aiohttp.ServerDisconnectedError(), "connection", "connection"),
        (DownloadTooLarge(10, 20), "too_large", None),  # linked instead: no error
        (RuntimeError("odd"), "error", "error"),
    ],
)
def test_pixverse_outcome_names_the_failure_and_its_code(
    error: BaseException | None, outcome: str, code: str | None
) -> None:
    assert pixverse_outcome(error) == (outcome, code)


async def test_pixverse_client_reports_every_request_to_its_observer() -> None:
    metrics = Metrics()
    async with (
        Simulator(SimulatorConfig(gen_time=0.1)) as sim,
        aiohttp.ClientSession() as session,
    ):
        client = PixVerseClient(
            session,
            base_url=sim.base_url,
            api_key="k",
            backoff_base=0.01,
            backoff_cap=0.02,
            observer=metrics.pixverse_request,
        )
        await client.balance()
        sim.inject_fault("result", "http_500", count=1)
        with pytest.raises(NotFound):
            await client.result(123456)  # the 500 is retried, then "no such video"

    requests = "pixbot_pixverse_requests_total"
    assert sample(metrics, requests, endpoint="/account/balance", outcome="ok") == 1
    result = "/video/result/{id}"
    assert sample(metrics, requests, endpoint=result, outcome="transient") == 1
    assert sample(metrics, requests, endpoint=result, outcome="not_found") == 1
    assert sample(metrics, "pixbot_pixverse_errors_total", endpoint=result, code="http_500") == 1
    assert sample(metrics, "pixbot_pixverse_request_seconds_count", endpoint=result) == 2
    assert "123456" not in metrics_text(metrics)


# -- jobs and credits --------------------------------------------------------------------------


async def test_job_observer_counts_jobs_and_credits(store: Store) -> None:
    metrics = Metrics()
    job = await create(store, 1)
    metrics.accepted(job)
    metrics.finished(job, JobState.DONE, 40)  # PixVerse said it charged 40
    other = replace(job, kind=JobKind.TEXT.value)
    metrics.accepted(other)
    metrics.finished(other, JobState.FAILED, 45)
    metrics.refunded(job, 40)
    metrics.delivered(replace(job, state=JobState.DONE), 1.5)
    metrics.abandoned(replace(other, state=JobState.FAILED))

    assert sample(metrics, "pixbot_jobs_accepted_total", kind="video") == 1
    assert sample(metrics, "pixbot_jobs_finished_total", state="done", kind="video") == 1
    assert sample(metrics, "pixbot_jobs_finished_total", state="failed", kind="text") == 1
    assert sample(metrics, "pixbot_jobs_finished_total", state="cancelled", kind="sound") == 0
    assert sample(metrics, "pixbot_credits_reserved_total") == 90
    assert sample(metrics, "pixbot_credits_committed_total") == 40
    assert sample(metrics, "pixbot_credits_released_total") == 45
    assert sample(metrics, "pixbot_credits_refunded_total") == 40
    assert sample(metrics, "pixbot_delivery_delay_seconds_count", state="done") == 1
    assert sample(metrics, "pixbot_delivery_delay_seconds_sum", state="done") == 1.5
    assert sample(metrics, "pixbot_deliveries_abandoned_total", state="failed") == 1


def test_an_odd_credit_number_never_raises_into_the_job() -> None:
    metrics = Metrics()

    @dataclass
    class Odd:
        kind: str = "from-a-newer-bot"
        cost: int = -5

    metrics.accepted(Odd())  # type: ignore[arg-type]
    metrics.finished(Odd(), JobState.CANCELLED, -5)  # type: ignore[arg-type]

    assert sample(metrics, "pixbot_jobs_accepted_total", kind="other") == 1
    assert sample(metrics, "pixbot_credits_reserved_total") == 0


class Shown:
    """A reporter that shows everything at once."""

    def __init__(self) -> None:
        self.updates: list[JobUpdate] = []

    async def show(self, update: JobUpdate) -> StatusTarget | None:
        self.updates.append(update)
        return None


async def test_use_cases_and_runner_report_cancels_withdrawals_and_refunds(store: Store) -> None:
    metrics = Metrics()
    async with aiohttp.ClientSession() as session:
        # Never reached: no job here is started.
        pixverse = PixVerseClient(session, base_url="http://127.0.0.1:9", api_key="unused")
        runner = JobRunner(store, pixverse, Shown(), FAST_RUNNER, observer=metrics)
        service = JobService(store, runner, observer=metrics)
        try:
            mine, theirs, lost, done = [
                (await service.accept(new_job(user))).job for user in (1, 2, 3, 4)
            ]
            assert (await service.cancel(mine.id, GUILD, shown="x", reason="x", owner_id=1)).ok
            assert (await service.cancel(theirs.id, GUILD, shown="x", reason="by a mod")).ok
            await service.withdraw(lost.id)
            await store.jobs.transition(done.id, "queued", "submitted", pixverse_video_id=7)
            await store.jobs.finish_done(done.id, "https://example.invalid/7.mp4")
            await service.remove_and_refund(done.id, GUILD, actor_id=MOD, reason="rules")
            shown = "pixbot_delivery_delay_seconds_count"
            async with asyncio.timeout(5):  # the cancelled jobs' statuses, shown
                while sample(metrics, shown, state="cancelled") != 2:
                    await asyncio.sleep(0.02)
        finally:
            await runner.stop()

    assert sample(metrics, "pixbot_jobs_accepted_total", kind="video") == 4
    assert sample(metrics, "pixbot_jobs_finished_total", state="cancelled", kind="video") == 3
    assert sample(metrics, "pixbot_credits_reserved_total") == 4 * 45
    assert sample(metrics, "pixbot_credits_released_total") == 3 * 45
    assert sample(metrics, "pixbot_credits_refunded_total") == 45
    # Finished by the store directly here, so not counted: only the use cases' paths are.
    assert sample(metrics, "pixbot_credits_committed_total") == 0


async def test_store_counts_unfinished_jobs_by_state_and_kind(store: Store) -> None:
    queued = [await create(store, user) for user in (1, 2, 3)]
    text = await create(store, 4, kind=JobKind.TEXT)
    await store.jobs.transition(queued[0].id, JobState.QUEUED, JobState.UPLOADING)
    await store.jobs.transition(text.id, JobState.QUEUED, JobState.SUBMITTED)
    await store.jobs.finish_failed(queued[1].id, "gone")

    counts = await store.jobs.unfinished_counts()

    assert counts == {
        (JobState.QUEUED, "video"): 1,
        (JobState.UPLOADING, "video"): 1,
        (JobState.SUBMITTED, "text"): 1,
    }


# -- the server --------------------------------------------------------------------------------


class StandInRunner:
    active = 2
    delivering = 1
    paused_since: float | None = None


@dataclass
class Stand:
    """A stand-in bot: a real store, a runner's numbers, a gateway state the test sets."""

    store: Store
    base: str = ""
    gateway: GatewayState = field(
        default_factory=lambda: GatewayState(ready=True, shards={0: 0.04})
    )


@pytest.fixture
async def stand(store: Store) -> AsyncIterator[Stand]:
    stand = Stand(store)
    runner: JobRunner = StandInRunner()  # type: ignore[assignment]
    server = MetricsServer(Metrics(), Sources(store, runner, lambda: stand.gateway), within=0.5)
    port = free_port()
    await server.start("127.0.0.1", port)
    stand.base = f"http://127.0.0.1:{port}"
    try:
        yield stand
    finally:
        await server.stop()


async def get(url: str) -> tuple[int, str, str]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(url, timeout=aiohttp.ClientTimeout(total=5)) as response,
    ):
        return response.status, response.headers["Content-Type"], await response.text()


def families(text: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    found: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            found.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return found


async def test_metrics_endpoint_serves_the_text_format_with_jobs_read_at_scrape(stand) -> None:
    await create(stand.store, 1)
    await create(stand.store, 2, kind=JobKind.EXTEND)

    status, content_type, text = await get(f"{stand.base}/metrics")

    assert status == 200
    assert content_type.startswith("text/plain")
    found = families(text)
    jobs = found["pixbot_jobs"]
    assert jobs[(("kind", "video"), ("state", "queued"))] == 1
    assert jobs[(("kind", "extend"), ("state", "queued"))] == 1
    assert jobs[(("kind", "video"), ("state", "generating"))] == 0
    assert len(jobs) == len(JobKind) * 4  # every unfinished state and kind, zero or not
    assert found["pixbot_queue_depth"][()] == 2
    assert found["pixbot_database_up"][()] == 1
    assert found["pixbot_runner_active_jobs"][()] == 2
    assert found["pixbot_deliveries_pending"][()] == 1
    assert found["pixbot_queue_paused"][()] == 0
    assert found["pixbot_gateway_up"][(("shard", "0"),)] == 1
    assert found["pixbot_gateway_latency_seconds"][(("shard", "0"),)] == 0.04


async def test_metrics_endpoint_speaks_openmetrics_when_asked(stand) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            f"{stand.base}/metrics",
            headers={"Accept": "application/openmetrics-text; version=1.0.0"},
            timeout=aiohttp.ClientTimeout(total=5),
        ) as response,
    ):
        assert response.headers["Content-Type"].startswith("application/openmetrics-text")
        assert (await response.text()).rstrip().endswith("# EOF")


async def test_healthz_is_200_when_the_gateway_is_connected_and_the_database_answers(stand) -> None:
    status, _, body = await get(f"{stand.base}/healthz")

    assert status == 200
    assert '"status": "ok"' in body


@pytest.mark.parametrize(
    ("gateway", "problem"),
    [
        (GatewayState(ready=False), "not ready"),
        (GatewayState(ready=True, shards={}), "no connection"),
        (GatewayState(ready=True, shards={0: 0.05, 1: None, 3: None}), "shard 1, 3 disconnected"),
    ],
)
async def test_healthz_is_503_naming_the_gateway_when_it_is_not_connected(
    stand, gateway: GatewayState, problem: str
) -> None:
    stand.gateway = gateway

    status, _, body = await get(f"{stand.base}/healthz")

    assert status == 503
    assert problem in body and '"database": "ok"' in body


async def test_healthz_is_503_naming_the_database_when_it_is_closed(stand) -> None:
    await stand.store.close()

    status, _, body = await get(f"{stand.base}/healthz")
    _, _, text = await get(f"{stand.base}/metrics")

    assert status == 503
    assert '"gateway": "ok"' in body and "not answering" in body
    assert str(stand.store.db.path) not in body
    assert families(text)["pixbot_database_up"][()] == 0
    assert "pixbot_jobs" not in families(text)  # not shown stale


async def test_healthz_is_503_when_the_database_does_not_answer_in_time(stand, monkeypatch) -> None:
    async def hang(*args: object) -> None:
        await asyncio.sleep(10)

    monkeypatch.setattr(stand.store.db, "fetch_one", hang)

    status, _, body = await get(f"{stand.base}/healthz")

    assert status == 503
    assert "no answer within 0.5 s" in body


async def test_a_port_in_use_is_one_line_naming_the_setting(store: Store) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        runner: JobRunner = StandInRunner()  # type: ignore[assignment]
        server = MetricsServer(Metrics(), Sources(store, runner, lambda: GatewayState(False)))
        with pytest.raises(MetricsUnavailable) as raised:
            await server.start("127.0.0.1", port)
    message = str(raised.value)
    assert f"METRICS_PORT {port}" in message and "\n" not in message


def test_each_bot_has_its_own_registry() -> None:
    first, second = Metrics(), Metrics()
    first.credits_reserved.inc(5)
    assert sample(second, "pixbot_credits_reserved_total") == 0
