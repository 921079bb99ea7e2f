"""A finished video reaches its member exactly once, whatever Discord does to the final edit.

Faults are injected by the fake Discord on each route: 429s with a short and a long
Retry-After, 5xx answers, connections dropped before and after the edit was applied. The
final edit is retried on the interaction webhook, then the channel message, then a new
message; the job stays "delivering" in the database until one works, also across a restart.
"""

# The waits take `timeout=` by design: every wait in a test is bounded.
# ruff: noqa: ASYNC109

from __future__ import annotations

import asyncio
import sqlite3
from dataclasses import replace

import pytest
from conftest import FAST_RUNNER, status_text

import bot.ui.status
from bot.jobs.progress import JobUpdate
from bot.simulator import SimulatorConfig
from bot.store.models import JobState
from bot.ui.buttons import result_view
from bot.ui.status import DiscordStatusReporter

WEBHOOK_EDIT = r"^/webhooks/\d+/[^/]+/messages/"
CHANNEL_EDIT = r"^/channels/\d+/messages/\d+$"


@pytest.fixture(autouse=True)
def quick_route_timeout(monkeypatch):
    # A route that hangs in discord.py's own retries is left for the next one this soon.
    monkeypatch.setattr(bot.ui.status, "FINAL_TIMEOUT", 1.0)


async def start_job(world):
    handle = await world.video()
    response = await handle.response(timeout=5)
    assert response.accepted and not response.ephemeral
    return handle, await world.latest_job(handle.user)


# Long enough to touch the status message (expire its token, delete it) before the result.
SLOW = SimulatorConfig(gen_time=1.5, seed=7)


def public_messages(world):
    return [m for m in world.fake.messages_in(world.channel) if not m.ephemeral]


def video_posts(world) -> int:
    """Messages in the channel that carry the video."""
    return sum(1 for m in public_messages(world) if m.files)


async def assert_delivered_once(world, handle, job_id: int, timeout: float = 20.0) -> None:
    job = await world.job_final(job_id, timeout=timeout)
    assert job.state is JobState.DONE, job.error
    assert job.delivery_since is None
    await world.until(lambda: handle.original.files, timeout=5)
    assert "Done" in status_text(handle.original)
    assert public_messages(world) == [handle.original]
    assert video_posts(world) == 1
    assert len(handle.original.files) == 1


FAULTS = [
    pytest.param(("429", 0.3), id="429-short"),
    pytest.param(("429", 60.0), id="429-long"),
    pytest.param(("status", 503), id="503"),
    pytest.param(("status", 500), id="500"),
    pytest.param(("drop", False), id="drop-before"),
    pytest.param(("drop", True), id="drop-after"),
]


def inject(world, route: str, fault: tuple[str, object], count: int) -> object:
    kind, arg = fault
    if kind == "429":
        return world.fake.rate_limit("PATCH", route, retry_after=float(arg), count=count)
    if kind == "status":
        return world.fake.inject_fault("PATCH", route, "status", count=count, status=int(arg))
    return world.fake.inject_fault("PATCH", route, "drop", count=count, after_apply=bool(arg))


@pytest.mark.parametrize("fault", FAULTS)
async def test_final_edit_survives_faults_on_the_webhook_route(world, fault):
    await world.start_bot(simulator=SLOW)
    # Every webhook edit fails for a while: the result still arrives, once.
    inject(world, WEBHOOK_EDIT, fault, count=3)
    handle, job = await start_job(world)
    await assert_delivered_once(world, handle, job.id)


@pytest.mark.parametrize("fault", FAULTS)
async def test_final_edit_survives_faults_on_the_channel_route(world, fault):
    await world.start_bot(simulator=SLOW)
    handle, job = await start_job(world)
    world.fake.expire_token(handle)  # every edit now goes through the channel
    inject(world, CHANNEL_EDIT, fault, count=3)
    await assert_delivered_once(world, handle, job.id)


async def test_both_routes_failing_keep_the_job_delivering_until_one_works(world):
    await world.start_bot(simulator=SLOW)
    webhook = world.fake.inject_fault("PATCH", WEBHOOK_EDIT, "status", count=1000, status=503)
    channel = world.fake.inject_fault("PATCH", CHANNEL_EDIT, "status", count=1000, status=503)
    handle, job = await start_job(world)
    await world.fake.wait_for(lambda: channel.hits >= 3, 20, what="three failed final edits")
    stored = await world.bot.store.jobs.get(job.id)
    assert stored.state is JobState.DONE  # committed: the credits are spent
    assert stored.delivery_since is not None  # but not yet shown
    assert "Done" not in status_text(handle.original)
    webhook.remaining = channel.remaining = 0  # Discord recovers
    await assert_delivered_once(world, handle, job.id)


async def test_delivery_goes_on_after_a_restart(world, pixverse):
    await world.start_bot(pixverse=pixverse)
    webhook = world.fake.inject_fault("PATCH", WEBHOOK_EDIT, "status", count=1000, status=503)
    channel = world.fake.inject_fault("PATCH", CHANNEL_EDIT, "status", count=1000, status=503)
    handle, job = await start_job(world)
    await world.fake.wait_for(lambda: channel.hits >= 1, 20, what="a failed final edit")
    await world.stop_bot()
    webhook.remaining = channel.remaining = 0

    await world.start_bot(pixverse=pixverse)
    await assert_delivered_once(world, handle, job.id)
    assert len(pixverse.generate_requests) == 1


async def test_a_deleted_status_message_gets_the_result_as_a_new_message(world):
    await world.start_bot(simulator=SLOW)
    handle, job = await start_job(world)
    world.fake.delete_message(world.channel, handle.original)
    # The new message is refused once too: it is retried, and posted once.
    world.fake.inject_fault("POST", r"^/channels/\d+/messages$", "status", count=1, status=500)
    job = await world.job_final(job.id, timeout=20)
    assert job.state is JobState.DONE
    posts = [m for m in public_messages(world) if m.files]
    assert len(posts) == 1
    assert f"<@{world.member.id}>" in posts[0].content
    assert posts[0].id == job.status_message_id


async def test_a_channel_the_bot_cannot_post_in_ends_delivery_with_the_job_done(world):
    await world.start_bot(simulator=SLOW)
    handle, job = await start_job(world)
    world.fake.delete_message(world.channel, handle.original)
    world.fake.set_bot_permissions(world.channel, 0)  # no access at all
    job = await world.job_final(job.id, timeout=20)
    assert job.state is JobState.DONE
    assert job.delivery_since is None  # given up for good, not retried for 30 minutes
    elsewhere = world.fake.add_channel(world.guild, "elsewhere")
    listing = await world.fake.invoke("jobs", user=world.member, channel=elsewhere)
    response = await listing.response(timeout=5)
    assert response.ephemeral
    assert f"#{job.id}`" in str(response.data) and "done" in str(response.data)


async def test_a_new_message_whose_answer_was_lost_is_not_posted_twice(world):
    await world.start_bot(simulator=SLOW)
    handle, job = await start_job(world)
    world.fake.delete_message(world.channel, handle.original)
    # The post reaches Discord but its answer never comes back: the retry carries the same
    # nonce, so Discord hands back the first message instead of creating a second one.
    rule = world.fake.inject_fault(
        "POST", r"^/channels/\d+/messages$", "drop", count=1, after_apply=True
    )
    job = await world.job_final(job.id, timeout=20)
    assert rule.hits == 1
    assert job.state is JobState.DONE
    posts = [m for m in public_messages(world) if m.files]
    assert len(posts) == 1
    assert posts[0].id == job.status_message_id


async def test_a_job_first_seen_before_its_message_was_recorded_is_finished_on_that_message(
    world,
):
    """Several processes: one answers the interaction, another shows the job queued before
    the message is recorded (its reporter was never primed), then runs and finishes it. The
    final edit goes to the status message once the job row names it, not to a new message."""
    bot = await world.start_bot()
    handle, job = await start_job(world)
    stored = await world.job_final(job.id)
    posts = len(public_messages(world))
    # The other process's reporter: it saw the job before the status message was recorded.
    other = DiscordStatusReporter(bot, view_factory=result_view, min_interval=0.05)
    unknown = replace(stored, status_message_id=None, status_channel_id=None)
    await other.show(JobUpdate.of(unknown, JobState.QUEUED, simulated=True, queue_position=1))
    final = JobUpdate.of(stored, JobState.FAILED, simulated=True, error="stopped", refunded=True)
    target = await other.show(final)
    await other.close()
    assert target is not None and target.message_id == handle.original.id
    assert "Failed" in status_text(handle.original)
    assert len(public_messages(world)) == posts  # no new message


async def forget_status_message(world, pixverse, *, delete: bool):
    """A job answered by a process killed before it recorded the status message's id (the
    soak's SIGKILL struck there): queued, the bot stopped, the id wiped from its row (with
    ``delete``, the member also deleted the message), and the bot started again."""
    await world.start_bot(pixverse=pixverse, runner=replace(FAST_RUNNER, max_active=0))
    handle, job = await start_job(world)
    await world.stop_bot()
    assert pixverse.generate_requests == []
    with sqlite3.connect(world.tmp_path / "data" / "bot.sqlite3") as db:
        db.execute(
            "UPDATE jobs SET status_message_id = NULL, status_channel_id = NULL WHERE id = ?",
            (job.id,),
        )
    db.close()
    if delete:
        world.fake.delete_message(world.channel, handle.original)
    await world.start_bot(pixverse=pixverse)
    return handle, job


async def test_a_status_message_whose_id_was_not_recorded_is_found_and_finished(world, pixverse):
    """The interaction's original response is the status message: the final edit finds it
    through the token, instead of leaving it queued and posting the result anew."""
    handle, job = await forget_status_message(world, pixverse, delete=False)
    await assert_delivered_once(world, handle, job.id)
    assert (await world.bot.store.jobs.get(job.id)).status_message_id == handle.original.id


async def test_without_an_original_response_the_result_is_a_new_message(world, pixverse):
    handle, job = await forget_status_message(world, pixverse, delete=True)
    job = await world.job_final(job.id, timeout=20)
    assert job.state is JobState.DONE, job.error
    [post] = public_messages(world)
    assert post is not handle.original and post.files
    assert f"<@{world.member.id}>" in post.content
    assert post.id == job.status_message_id


class Shared:
    """The database's answers a reporter gets when other processes run jobs too: whether
    a job is still queued (one answer per question, in order), and what it marked to be
    shown again."""

    def __init__(self, *queued: bool) -> None:
        self.queued = list(queued)
        self.reshown: list[int] = []

    async def in_state(self, job_id: int, state: JobState) -> bool:
        return self.queued.pop(0)

    async def reshow_final(self, job_id: int) -> bool:
        self.reshown.append(job_id)
        return True


async def show_queued(world, shared: Shared, state: JobState = JobState.QUEUED) -> str:
    """Another process's reporter shows the finished job of ``world`` as queued (or in
    ``state``); what the status message shows after."""
    bot = world.bot
    handle, job = await start_job(world)
    stored = await world.job_final(job.id)
    await world.until(lambda: "Done" in status_text(handle.original))
    other = DiscordStatusReporter(bot, view_factory=result_view, min_interval=0.05, shared=shared)
    extra = {"queue_position": 3} if state is JobState.QUEUED else {"elapsed": 12.0}
    await other.show(JobUpdate.of(stored, state, simulated=True, **extra))
    await world.until(lambda: not shared.queued, timeout=5)
    await asyncio.sleep(0.2)
    await other.close()
    return status_text(handle.original)


@pytest.mark.parametrize("state", [JobState.QUEUED, JobState.GENERATING])
async def test_a_state_the_job_left_is_not_shown(world, state):
    """Queued: another process claimed the job; generating: another cancelled it."""
    await world.start_bot()
    shared = Shared(False)  # it moved on (and finished) by the time the edit would go
    shown = await show_queued(world, shared, state)
    assert "Done" in shown and "Queued" not in shown and "Generating" not in shown
    assert shared.reshown == []


async def test_a_place_in_line_that_landed_after_the_claim_gets_the_final_state_shown_again(
    world,
):
    await world.start_bot()
    shared = Shared(True, False)  # queued when the edit left, claimed when it landed
    shown = await show_queued(world, shared)
    assert "Queued" in shown  # the stale edit landed...
    assert shared.reshown == [(await world.latest_job()).id]  # ...so shown again
