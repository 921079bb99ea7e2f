"""The model catalogue end to end: through the fake Discord, the real bot and the embedded
simulator. Each model's own rules, per-second prices, and a replacement catalogue whose
imaginary model reaches the synced commands and is generated at the catalogue's price."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from conftest import status_text
from test_e2e_refusals import refusal

from bot.pixverse.catalogue import load_catalogue

ROOT = Path(__file__).resolve().parents[1]
SHIPPED_FILE = ROOT / "bot" / "pixverse" / "catalogue.toml"

# An imaginary model: 2 to 12 s, two qualities, 11 credits a second at 720p.
V9 = """
[models."v9"]
qualities = ["540p", "720p"]
durations = { min = 2, max = 12 }
motion_modes = ["normal"]
aspect_ratios = ["16:9", "9:16"]
native_audio = true
prompt_max = 6000

[models."v9".price]
"540p" = 8
"720p" = 11

[models."v9".audio_price]
"540p" = 2
"720p" = 3
"""


def by_name(definitions: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {definition["name"]: definition for definition in definitions}


def model_choices(definitions: list[dict[str, Any]]) -> list[str]:
    options = by_name(by_name(definitions)["video"]["options"])
    return [choice["value"] for choice in options["model"]["choices"]]


def with_v9(tmp_path: Path) -> Path:
    path = tmp_path / "catalogue-v9.toml"
    path.write_text(SHIPPED_FILE.read_text(encoding="utf-8") + V9, encoding="utf-8")
    return path


async def accepted_job(world: Any, handle: Any):
    response = await handle.response(timeout=5)
    assert not response.ephemeral, response.content
    job = await world.latest_job(handle.user)
    return await world.job_final(job.id)


# --- each model's own rules -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        pytest.param(
            {"model": "v6", "motion": "fast"},
            ["v6 has no fast motion", "normal motion", "v3.5, v4, v4.5"],
            id="fast-on-v6",
        ),
        pytest.param(
            {"model": "v4.5", "duration": 12},
            ["v4.5 makes videos of 5 or 8 s, not 12 s", "(v6, c1)"],
            id="12s-on-v4.5",
        ),
        pytest.param(
            {"model": "v4.5", "prompt": "x" * 3000},
            ["3000 characters; the limit is 2048 on v4.5", "(v6, c1)"],
            id="3000-characters-on-v4.5",
        ),
        pytest.param(
            {"model": "v4.5", "quality": "1080p", "duration": 8},
            ["1080p supports 5 s only on v4.5", "choose 5 s", "v5"],
            id="1080p-8s-on-v4.5",
        ),
    ],
)
async def test_each_model_refuses_what_its_catalogue_entry_does_not_allow(world, options, expected):
    await world.start_bot()
    text = await refusal(world, await world.video(**options))
    for part in expected:
        assert part in text, text


async def test_a_3000_character_prompt_is_accepted_on_v6(world):
    await world.start_bot()
    job = await accepted_job(world, await world.video(model="v6", prompt="x" * 3000))
    assert job.state == "done"
    (request,) = world.bot.simulator.state.generate_requests
    assert len(request.json["prompt"]) == 3000


async def test_1080p_for_8_s_is_accepted_on_v5_at_its_price(world):
    await world.start_bot(daily_credits=300)
    job = await accepted_job(world, await world.video(model="v5", quality="1080p", duration=8))
    assert (job.state, job.cost) == ("done", 240)
    (sim_job,) = world.bot.simulator.state.jobs.values()
    assert sim_job.credits == 240


async def test_12_s_on_v6_is_accepted_at_the_per_second_price(world):
    await world.start_bot()
    handle = await world.video(model="v6", quality="540p", duration=12)
    job = await accepted_job(world, handle)
    assert (job.state, job.params.duration, job.cost) == ("done", 12, 12 * 7)
    (sim_job,) = world.bot.simulator.state.jobs.values()
    assert (sim_job.params.model, sim_job.params.duration, sim_job.credits) == ("v6", 12, 84)
    quota = await world.bot.store.ledger.quota(world.guild.id, world.member.id)
    assert quota.used_today == 84
    assert "Duration: 12 s" in status_text(handle.original)


# --- a replacement catalogue ----------------------------------------------------------------


async def test_a_model_added_by_a_replacement_catalogue_is_offered_and_generated(world, tmp_path):
    path = with_v9(tmp_path)
    bot = await world.start_bot(pixverse_catalogue=path)
    assert bot.settings.catalogue.names[-1] == "v9"
    assert model_choices(world.fake.synced_commands(world.guild))[-2:] == ["c1", "v9"]
    # The embedded simulator checks and prices with the same catalogue.
    assert bot.simulator.state.catalogue is bot.settings.catalogue

    handle = await world.video(model="v9", quality="720p", duration=10, prompt="y" * 5500)
    job = await accepted_job(world, handle)
    assert (job.state, job.params.model, job.cost) == ("done", "v9", 110)
    (sim_job,) = bot.simulator.state.jobs.values()
    assert (sim_job.params.model, sim_job.credits) == ("v9", 110)
    assert "Model: v9" in status_text(handle.original)
    # Its own rules hold too: 13 s is beyond its range.
    refused = await (await world.video(model="v9", duration=13, user=world.other)).response(
        timeout=5
    )
    assert refused.ephemeral and "v9 makes videos of 2 to 12 s, not 13 s" in refused.content
    assert len(bot.simulator.state.jobs) == 1


async def test_a_changed_catalogue_makes_the_hash_based_sync_send_the_commands_again(
    world, tmp_path
):
    await world.start_bot(dev_guild_id=None)
    assert "v9" not in model_choices(world.fake.synced_commands())
    await world.stop_bot()
    # Unchanged: no sync.
    bot = await world.start_bot(dev_guild_id=None)
    assert (world.fake.sync_count(), bot.synced) == (1, [])
    await world.stop_bot()

    bot = await world.start_bot(dev_guild_id=None, pixverse_catalogue=with_v9(tmp_path))
    assert (world.fake.sync_count(), bot.synced) == (2, ["global"])
    synced = world.fake.synced_commands()
    assert model_choices(synced)[-1] == "v9"
    duration = by_name(by_name(synced)["video"]["options"])["duration"]
    assert (duration["min_value"], duration["max_value"]) == (1, 15)
    prompt = by_name(by_name(synced)["video"]["options"])["prompt"]
    assert prompt["max_length"] == 6000


def test_two_cogs_with_different_catalogues_keep_their_own_choices(tmp_path):
    """discord.py shares a cog's parameter objects between instances: each bot must still
    get its own catalogue's choices, and the class's command stays untouched."""
    from cogs.generate import Generate

    def cog(catalogue: Any) -> Generate:
        return Generate(SimpleNamespace(settings=SimpleNamespace(catalogue=catalogue)))  # type: ignore[arg-type]

    first, second = cog(load_catalogue(with_v9(tmp_path))), cog(load_catalogue())
    assert [c.value for c in first.video._params["model"].choices][-1] == "v9"
    assert "v9" not in [c.value for c in second.video._params["model"].choices]
    assert "v9" not in [c.value for c in second.extend._params["model"].choices]
    assert not Generate.video._params["model"].choices
