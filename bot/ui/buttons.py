"""The result buttons: Re-roll, Extend and (on a result without sound) Sound, usable by any
member, charged to whoever clicks.

They are ``DynamicItem``s whose ``custom_id`` carries the job id, so they keep working after
a restart without any stored view.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Any

import discord

from bot.errors import UserFacingError
from bot.jobs.progress import JobUpdate
from bot.service import NotUsable, usable_source
from bot.service.jobs import (
    SOUND_DESCRIPTION_MAX,
    extension_of,
    extension_options,
    reroll_of,
    sound_of,
)
from bot.store.models import Job, JobKind, JobState
from bot.tree import answer_error
from bot.ui.context import services

log = logging.getLogger(__name__)

_MAX_JOB_ID = 2**63 - 1
MODAL_TEXT_MAX = 4000
_GONE = (
    "{what} no longer exists, so there is nothing to re-roll or extend; nothing was "
    "charged. Start a new job with `/video`."
)


async def _finished_job(interaction: discord.Interaction[Any], job_id: int) -> Job:
    # An id past SQLite's integer range (a forged custom_id) cannot be a job, and asking
    # the store for it would raise OverflowError.
    job = await services(interaction).store.jobs.get(job_id) if job_id <= _MAX_JOB_ID else None
    if job is None:
        raise UserFacingError(_GONE.format(what=f"Job #{job_id}"))
    problem = usable_source(job, interaction.guild.id if interaction.guild else None)
    if problem is NotUsable.MISSING:
        raise UserFacingError(f"Job #{job_id} is not a job of this server.")
    if problem is NotUsable.UNFINISHED:
        raise UserFacingError(f"Job #{job_id} has no finished video to work from.")
    if problem is NotUsable.REMOVED:
        raise UserFacingError(f"Job #{job_id} was removed by a moderator.")
    assert job is not None
    return job


class JobButton:
    """Shared by the buttons that act on one job: the job id lives in the ``custom_id``
    (``pixbot:<action>:<job id>``), and errors reach the clicker by the usual road."""

    job_id: int

    def __init__(self, job_id: int) -> None:
        self.job_id = job_id

    @staticmethod
    def make(action: str, label: str, emoji: str, job_id: int) -> discord.ui.Button[Any]:
        return discord.ui.Button(
            label=label,
            emoji=emoji,
            style=discord.ButtonStyle.secondary,
            custom_id=f"pixbot:{action}:{job_id}",
        )

    @classmethod
    async def from_custom_id(
        cls,
        interaction: discord.Interaction[Any],
        item: discord.ui.Item[Any],
        match: re.Match[str],
        /,
    ) -> Any:
        return cls(int(match["job"]))

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        try:
            await self.run(interaction)
        except Exception as exc:
            await report_item_error(interaction, exc)

    async def run(self, interaction: discord.Interaction[Any]) -> None:
        raise NotImplementedError


class RerollButton(
    JobButton,
    discord.ui.DynamicItem[discord.ui.Button[Any]],
    template=r"pixbot:reroll:(?P<job>\d+)",
):
    def __init__(self, job_id: int) -> None:
        discord.ui.DynamicItem.__init__(self, self.make("reroll", "Re-roll", "🎲", job_id))
        JobButton.__init__(self, job_id)

    async def run(self, interaction: discord.Interaction[Any]) -> None:
        reroll = reroll_of(await _finished_job(interaction, self.job_id))
        await services(interaction).intake.accept(
            interaction,
            reroll.params,
            kind=JobKind.REROLL,
            parent_job_id=reroll.parent_job_id,
            pixverse_img_id=reroll.pixverse_img_id,
            pixverse_media_id=reroll.pixverse_media_id,
            pixverse_last_img_id=reroll.pixverse_last_img_id,
        )


class ExtendButton(
    JobButton,
    discord.ui.DynamicItem[discord.ui.Button[Any]],
    template=r"pixbot:extend:(?P<job>\d+)",
):
    def __init__(self, job_id: int) -> None:
        discord.ui.DynamicItem.__init__(self, self.make("extend", "Extend", "➕", job_id))
        JobButton.__init__(self, job_id)

    async def run(self, interaction: discord.Interaction[Any]) -> None:
        source = await _finished_job(interaction, self.job_id)
        # Refuse at the click rather than after the member has typed a prompt: the extension
        # costs what the source's options cost (same model, quality, duration and sound).
        await services(interaction).intake.precheck(
            interaction, extension_options(source), check_prompt=False
        )
        modal = ExtendModal(self.job_id)
        spec = services(interaction).store.catalogue.models.get(source.params.model)
        if spec is not None:
            modal.prompt.max_length = min(MODAL_TEXT_MAX, spec.prompt_max)
        # Not kept by discord.py (a stopped modal is not stored): every submission, also one
        # for a modal opened before a restart, goes through submit_extend_modal.
        modal.stop()
        await interaction.response.send_modal(modal)


EXTEND_MODAL_PREFIX = "pixbot:extend-modal:"
EXTEND_MODAL_ID = re.compile(re.escape(EXTEND_MODAL_PREFIX) + r"(?P<job>\d+)")
PROMPT_FIELD = "prompt"


class ExtendModal(discord.ui.Modal, title="Extend this video"):
    """The form's layout; its submissions are answered by ``submit_extend_modal``."""

    prompt: discord.ui.TextInput[ExtendModal] = discord.ui.TextInput(
        label="What happens next?",
        style=discord.TextStyle.paragraph,
        min_length=1,
        # Discord's cap for a text input; the source's model sets the real limit
        # (checked by extension_of against the catalogue).
        max_length=MODAL_TEXT_MAX,
        placeholder="The camera pulls back to reveal…",
        custom_id=PROMPT_FIELD,
    )

    def __init__(self, job_id: int) -> None:
        super().__init__(custom_id=f"{EXTEND_MODAL_PREFIX}{job_id}", timeout=None)


async def submit_extend_modal(interaction: discord.Interaction[Any]) -> bool:
    """Answer a submitted Extend form; False if the interaction is not one."""
    data: dict[str, Any] = dict(interaction.data or {})
    match = EXTEND_MODAL_ID.fullmatch(str(data.get("custom_id", "")))
    if interaction.type is not discord.InteractionType.modal_submit or match is None:
        return False
    try:
        await _extend_from_modal(interaction, int(match["job"]), _field(data, PROMPT_FIELD))
    except Exception as exc:
        await report_item_error(interaction, exc)
    return True


async def _extend_from_modal(interaction: discord.Interaction[Any], job_id: int, text: str) -> None:
    source = await _finished_job(interaction, job_id)
    params = extension_of(source, text, services(interaction).store.catalogue)
    await services(interaction).intake.accept(
        interaction, params, kind=JobKind.EXTEND, parent_job_id=source.id
    )


class SoundButton(
    JobButton,
    discord.ui.DynamicItem[discord.ui.Button[Any]],
    template=r"pixbot:sound:(?P<job>\d+)",
):
    def __init__(self, job_id: int) -> None:
        discord.ui.DynamicItem.__init__(self, self.make("sound", "Sound", "🔊", job_id))
        JobButton.__init__(self, job_id)

    async def run(self, interaction: discord.Interaction[Any]) -> None:
        source = await _finished_job(interaction, self.job_id)
        # Refused at the click rather than after the member has described the sound: the
        # price is known (the source's duration), the description is checked on submit.
        params = sound_of(source)
        await services(interaction).intake.precheck(interaction, params, check_prompt=False)
        modal = SoundModal(self.job_id)
        # Not kept by discord.py, as the Extend form: submit_sound_modal answers it.
        modal.stop()
        await interaction.response.send_modal(modal)


SOUND_MODAL_PREFIX = "pixbot:sound-modal:"
SOUND_MODAL_ID = re.compile(re.escape(SOUND_MODAL_PREFIX) + r"(?P<job>\d+)")
SOUND_FIELD = "sound"


class SoundModal(discord.ui.Modal, title="Add sound to this video"):
    """The form's layout; its submissions are answered by ``submit_sound_modal``."""

    sound: discord.ui.TextInput[SoundModal] = discord.ui.TextInput(
        label="What should it sound like? (optional)",
        style=discord.TextStyle.paragraph,
        required=False,
        max_length=SOUND_DESCRIPTION_MAX,
        placeholder="Rain on a tin roof… or leave it empty and PixVerse picks the sound",
        custom_id=SOUND_FIELD,
    )

    def __init__(self, job_id: int) -> None:
        super().__init__(custom_id=f"{SOUND_MODAL_PREFIX}{job_id}", timeout=None)


async def submit_sound_modal(interaction: discord.Interaction[Any]) -> bool:
    """Answer a submitted Sound form; False if the interaction is not one."""
    data: dict[str, Any] = dict(interaction.data or {})
    match = SOUND_MODAL_ID.fullmatch(str(data.get("custom_id", "")))
    if interaction.type is not discord.InteractionType.modal_submit or match is None:
        return False
    try:
        await _sound_from_modal(interaction, int(match["job"]), _field(data, SOUND_FIELD))
    except Exception as exc:
        await report_item_error(interaction, exc)
    return True


async def _sound_from_modal(interaction: discord.Interaction[Any], job_id: int, text: str) -> None:
    source = await _finished_job(interaction, job_id)
    params = sound_of(source, text)
    await services(interaction).intake.accept(
        interaction, params, kind=JobKind.SOUND, parent_job_id=source.id
    )


def _field(node: Any, custom_id: str) -> str:
    """A text input's value from a modal submission, in rows or labels, however nested."""
    if isinstance(node, dict):
        if node.get("custom_id") == custom_id and isinstance(node.get("value"), str):
            return str(node["value"])
        children = [*node.get("components", []), node.get("component")]
        return next((v for child in children if (v := _field(child, custom_id))), "")
    if isinstance(node, list):
        return next((v for child in node if (v := _field(child, custom_id))), "")
    return ""


async def answer_unrouted(
    interaction: discord.Interaction[Any],
    dynamic_items: Sequence[type[discord.ui.DynamicItem[Any]]],
) -> None:
    """Answer what no handler will, so a member never sees "This interaction failed": an
    Extend or Sound form (``submit_extend_modal``, ``submit_sound_modal``), and a component
    whose ``custom_id`` none of ``dynamic_items`` claims (forged, malformed such as
    ``pixbot:reroll:abc``, or from a button this bot no longer makes). Every component the
    bot sends is one of those ``DynamicItem``s (they outlive restarts), so no live view waits
    for the others."""
    if await submit_extend_modal(interaction) or await submit_sound_modal(interaction):
        return
    data: dict[str, Any] = dict(interaction.data or {})
    custom_id = str(data.get("custom_id", ""))
    if interaction.type is discord.InteractionType.component:
        if any(
            item.__discord_ui_compiled_template__.fullmatch(custom_id) for item in dynamic_items
        ):
            return  # that item's callback answers
    elif not (
        interaction.type is discord.InteractionType.modal_submit
        and custom_id.startswith((EXTEND_MODAL_PREFIX, SOUND_MODAL_PREFIX))
    ):
        # Commands and autocomplete have the tree; Discord sends only the forms the bot
        # opened, and another form has its own handler.
        return
    log.info("Answered an unknown component %r from user %d", custom_id[:100], interaction.user.id)
    await report_item_error(
        interaction, UserFacingError(_GONE.format(what="The job behind this button"))
    )


async def report_item_error(interaction: discord.Interaction[Any], error: Exception) -> None:
    await answer_error(
        interaction,
        error,
        where="Button or modal",
        unexpected="Something went wrong on the bot's side; nothing was charged.",
    )


def result_view(update: JobUpdate) -> discord.ui.View | None:
    """The buttons under a finished video; none for failed or cancelled jobs."""
    if update.state is not JobState.DONE:
        return None
    view = discord.ui.View(timeout=None)
    view.add_item(RerollButton(update.job_id))
    view.add_item(ExtendButton(update.job_id))
    if update.without_sound:
        view.add_item(SoundButton(update.job_id))
    return view
