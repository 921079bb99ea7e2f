"""The Re-roll and Extend buttons under a finished video, pressed through the fake Discord."""

from __future__ import annotations

from conftest import status_text
from fakediscord.models import walk_components

from bot.store.models import JobKind, JobState


async def quota(world, user):
    return await world.bot.store.ledger.quota(world.guild.id, user.id)


async def finished_video(world, user=None, **options):
    """A done /video job of `user` (default: world.member) and its status message."""
    handle = await world.video(user, **options)
    await handle.response(timeout=5)
    job = await world.latest_job(handle.user)
    job = await world.job_final(job.id)
    assert job.state is JobState.DONE
    message = handle.original
    await world.until(lambda: message.files)
    return job, message


async def new_job_of(world, user, handle, exclude: int | None = None):
    """The job a button press created for `user`, once final, and its status message."""
    response = await handle.response(timeout=5)
    assert response.accepted and not response.ephemeral, response
    job = await world.latest_job(user)
    assert job.id != exclude
    job = await world.job_final(job.id)
    return job, handle.original


def text_input_id(modal: dict) -> str:
    [text_input] = [c for c in walk_components(modal["components"]) if c.get("type") == 4]
    return text_input["custom_id"]


async def test_reroll_by_another_member_is_their_new_job_on_the_same_image(world):
    bot = await world.start_bot()
    source, message = await finished_video(world, seed=1234)
    assert (await quota(world, world.member)).used_today == 45

    click = await world.fake.click(message, f"pixbot:reroll:{source.id}", user=world.other)
    job, status = await new_job_of(world, world.other, click, exclude=source.id)

    assert job.state is JobState.DONE
    assert job.user_id == world.other.id and job.kind == JobKind.REROLL
    assert status is not message and status.channel is world.channel
    assert not status.ephemeral
    assert f"<@{world.other.id}>" in status.content and f"#{job.id}" in status.content
    await world.until(lambda: status.files)
    assert "Credits left today: 105" in status_text(status)
    assert not any(snapshot.pings_anyone for snapshot in status.history)
    assert (await quota(world, world.other)).used_today == 45
    assert (await quota(world, world.member)).used_today == 45

    first, second = bot.simulator.generate_requests
    assert second.json["img_id"] == first.json["img_id"]
    assert second.json["seed"] != first.json["seed"]
    assert len([r for r in bot.simulator.requests if r.route == "image_upload"]) == 1


async def test_extend_button_opens_a_modal_and_starts_an_extension_of_that_video(world):
    bot = await world.start_bot()
    source, message = await finished_video(world)

    click = await world.fake.click(message, f"pixbot:extend:{source.id}", user=world.other)
    modal = await click.wait_modal(timeout=5)
    assert modal["custom_id"] == f"pixbot:extend-modal:{source.id}"
    assert (await quota(world, world.other)).used_today == 0  # opening the modal is free

    submit = await world.fake.submit_modal(
        modal["custom_id"],
        {text_input_id(modal): "the cat jumps onto the table"},
        user=world.other,
        channel=world.channel,
    )
    job, status = await new_job_of(world, world.other, submit, exclude=source.id)

    assert job.state is JobState.DONE, job.error
    assert job.kind == JobKind.EXTEND and job.parent_job_id == source.id
    assert job.user_id == world.other.id
    assert status is not message and not status.ephemeral
    assert "extension" in status_text(status) and f"#{source.id}" in status_text(status)
    [extend] = [r for r in bot.simulator.requests if r.route == "extend_generate"]
    assert extend.json["source_video_id"] == source.pixverse_video_id
    assert extend.json["prompt"] == "the cat jumps onto the table"
    assert (await quota(world, world.other)).used_today == 45
    assert (await quota(world, world.member)).used_today == 45


async def test_buttons_keep_working_after_a_restart(world, pixverse):
    await world.start_bot(pixverse=pixverse)
    source, message = await finished_video(world)
    await world.stop_bot()

    await world.start_bot(pixverse=pixverse)
    click = await world.fake.click(message, f"pixbot:reroll:{source.id}", user=world.other)
    job, _ = await new_job_of(world, world.other, click, exclude=source.id)
    assert job.state is JobState.DONE, job.error
    assert len(pixverse.generate_requests) == 2

    click = await world.fake.click(message, f"pixbot:extend:{source.id}", user=world.other)
    modal = await click.wait_modal(timeout=5)
    assert modal["custom_id"] == f"pixbot:extend-modal:{source.id}"


async def test_button_for_a_job_of_another_server_is_refused(world):
    bot = await world.start_bot()
    source, _ = await finished_video(world)
    elsewhere = world.fake.add_guild("Elsewhere")
    channel = world.fake.add_channel(elsewhere, "general")
    world.fake.add_member(elsewhere, world.other)
    # A bot message there carrying this server's job id (e.g. a copied or forged component).
    forged = world.fake.create_channel_message(
        channel,
        {
            "content": "look",
            "components": [
                {
                    "type": 1,
                    "components": [
                        {
                            "type": 2,
                            "style": 2,
                            "label": "Re-roll",
                            "custom_id": f"pixbot:reroll:{source.id}",
                        }
                    ],
                }
            ],
        },
        [],
        route="test",
    )
    await world.fake.wait_for(
        lambda: bot.get_guild(elsewhere.id) is not None, 5, what="the bot to see the guild"
    )
    click = await world.fake.click(forged, f"pixbot:reroll:{source.id}", user=world.other)
    response = await click.response(timeout=5)
    assert response.ephemeral and "not a job of this server" in response.content
    assert len(bot.simulator.generate_requests) == 1
    assert await bot.store.jobs.count_for_user(elsewhere.id, world.other.id) == 0


async def test_button_on_a_removed_result_is_refused(world):
    bot = await world.start_bot()
    source, message = await finished_video(world)
    assert await bot.store.jobs.remove_result(source.id, actor_id=world.admin.id) == 45

    for custom_id in (f"pixbot:reroll:{source.id}", f"pixbot:extend:{source.id}"):
        click = await world.fake.click(message, custom_id, user=world.other)
        response = await click.response(timeout=5)
        assert response.ephemeral and "removed" in response.content
        assert click.modal is None
    assert (await quota(world, world.other)).used_today == 0
    assert len(bot.simulator.generate_requests) == 1


async def test_clicker_without_credits_is_refused_and_nothing_is_charged(world):
    bot = await world.start_bot()
    source, message = await finished_video(world)
    await bot.store.admin.set_daily(world.guild.id, world.admin.id, world.other.id, 10)

    click = await world.fake.click(message, f"pixbot:reroll:{source.id}", user=world.other)
    response = await click.response(timeout=5)
    assert response.ephemeral
    assert "credit" in response.content.lower()
    left = await quota(world, world.other)
    assert (left.used_today, left.reserved) == (0, 0)
    assert await bot.store.jobs.count_for_user(world.guild.id, world.other.id) == 0
    assert len(bot.simulator.generate_requests) == 1
    assert [m for m in world.fake.messages_in(world.channel) if not m.ephemeral] == [message]


async def test_two_members_extending_the_same_video_each_get_their_job(world):
    bot = await world.start_bot(max_jobs_per_user=5)
    source, message = await finished_video(world)
    custom_id = f"pixbot:extend:{source.id}"
    member_click = await world.fake.click(message, custom_id, user=world.member)
    member_modal = await member_click.wait_modal(timeout=5)
    other_click = await world.fake.click(message, custom_id, user=world.other)
    other_modal = await other_click.wait_modal(timeout=5)

    # One submits, and later the other: each modal must still reach the bot.
    for user, modal, prompt in (
        (world.member, member_modal, "the cat sleeps"),
        (world.other, other_modal, "the cat runs"),
    ):
        submit = await world.fake.submit_modal(
            modal["custom_id"], {text_input_id(modal): prompt}, user=user, channel=world.channel
        )
        job, _ = await new_job_of(world, user, submit, exclude=source.id)
        assert job.kind == JobKind.EXTEND and job.state is JobState.DONE, job.error
    prompts = sorted(r.json["prompt"] for r in bot.simulator.requests if "extend" in r.route)
    assert prompts == ["the cat runs", "the cat sleeps"]


async def test_extend_modal_opened_before_a_restart_is_answered_after_it(world, pixverse):
    await world.start_bot(pixverse=pixverse)
    source, message = await finished_video(world)
    click = await world.fake.click(message, f"pixbot:extend:{source.id}", user=world.other)
    modal = await click.wait_modal(timeout=5)
    await world.stop_bot()

    await world.start_bot(pixverse=pixverse)
    submit = await world.fake.submit_modal(
        modal["custom_id"], {text_input_id(modal): "and then"}, user=world.other
    )
    response = await submit.response(timeout=3)
    assert response.accepted and not response.ephemeral
