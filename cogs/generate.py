"""/video, /extend, /imagine and /transition: parse → validate → hand to the intake → the
status message answers."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import TYPE_CHECKING, Any, Literal

import discord
from discord import app_commands
from discord.ext import commands

from bot.errors import UserFacingError
from bot.jobs.effects import EffectList
from bot.jobs.media import (
    PreparedMedia,
    check_declared_image,
    check_declared_video,
    prepare_image,
    prepare_video,
)
from bot.jobs.options import Defaults, build_options
from bot.pixverse.catalogue import Catalogue
from bot.pixverse.hosts import DownloadFailed, DownloadRefused, discord_attachments, fetch
from bot.pixverse.rules import IMAGE_MAX_BYTES, SEED_MAX, VIDEO_MAX_BYTES
from bot.service import NotUsable, usable_source
from bot.store.models import Job, JobInput, JobKind, JobParams, JobSource
from bot.tree import guarded_autocomplete
from bot.ui.intake import within_deadline
from bot.ui.render import prompt_start

if TYPE_CHECKING:
    from bot.app import PixBot

# The model, quality, motion, duration and aspect ratio options, and the prompts' lengths,
# come from the model catalogue when the cog loads (``catalogue_options``): plain types here,
# so a changed catalogue changes the command definitions (and the hash-based sync sends them
# again).
StyleChoice = Literal["anime", "3d_animation", "clay", "comic", "cyberpunk"]
Seed = app_commands.Range[int, 0, SEED_MAX]
ATTACHMENT_TIMEOUT = 60.0  # seconds for one attachment download
EFFECT_LIST_WAIT = 1.0  # seconds a command waits for PixVerse's effect list when none is known
DISCORD_STRING_MAX = 6000  # the longest string option Discord offers (max_length)

_OPTION_HELP = {
    "prompt": "What should happen in the video",
    "negative_prompt": "What the video should avoid",
    "model": "PixVerse model; each has its own durations, qualities and motion",
    "quality": "Resolution; some models make 1080p at short durations only",
    "duration": "Length in seconds; the model decides which lengths it makes",
    "motion": "Motion mode; fast is offered by some models, at short durations",
    "style": "Visual style (only effective on the models that have styles)",
    "seed": "Seed for a repeatable result (0–2147483647); random when left out",
    "effect": "A PixVerse effect: start typing to pick one",
}
_IMAGINE_HELP = {
    **{name: text for name, text in _OPTION_HELP.items() if name != "effect"},
    "aspect_ratio": "Shape of the video (16:9 when left out); the model decides which it makes",
}
_TRANSITION_HELP = {
    **{name: text for name, text in _OPTION_HELP.items() if name != "effect"},
    "prompt": "What happens between the first and the last frame",
    "first": "The first frame: a PNG, JPEG or WebP picture",
    "last": "The last frame: a PNG, JPEG or WebP picture",
}
# Kept apart from _OPTION_HELP, which describes every option of each command using it.
_AUDIO_HELP = {
    "audio": "Add sound: native on models that have it, else PixVerse's sound effect (costs more)",
}


def catalogue_options(command: app_commands.Command[Any, ..., Any], catalogue: Catalogue) -> None:
    """Give ``command``'s model, quality, motion, duration and aspect ratio options (those it
    has) the catalogue's choices and ranges, and its prompts the longest length any model takes.

    discord.py copies a cog's commands per instance but shares their parameter objects, so
    each is replaced, never changed in place (another bot in the same process may hold a
    different catalogue)."""
    params = command._params
    low, high = catalogue.duration_bounds
    lengths = sorted({spec.prompt_max for spec in catalogue.models.values()})
    prompt_help = (
        f"What should happen in the video (up to {lengths[0]} characters)"
        if len(lengths) == 1
        else f"What should happen in the video ({lengths[0]}–{lengths[-1]} characters by model)"
    )
    changes: dict[str, dict[str, Any]] = {
        "prompt": {
            "min_value": 1,
            "max_value": min(catalogue.prompt_max, DISCORD_STRING_MAX),
            "description": prompt_help,
        },
        "negative_prompt": {"min_value": 0, "max_value": catalogue.negative_prompt_max},
        "model": {"choices": [app_commands.Choice(name=n, value=n) for n in catalogue.names]},
        "quality": {
            "choices": [
                app_commands.Choice(name=q.value, value=q.value) for q in catalogue.qualities
            ]
        },
        "motion": {
            "choices": [
                app_commands.Choice(name=m.value, value=m.value) for m in catalogue.motion_modes
            ]
        },
        "duration": {
            "min_value": low,
            "max_value": high,
            "description": f"Length in seconds ({low}–{high}); the model decides which it makes",
        },
        # Every ratio some model makes; the chosen model's own are checked (build_options).
        "aspect_ratio": {
            "choices": [app_commands.Choice(name=r, value=r) for r in catalogue.aspect_ratios]
        },
    }
    for name, change in changes.items():
        if name in params:
            params[name] = dataclasses.replace(params[name], **change)


class Generate(commands.Cog):
    def __init__(self, bot: PixBot) -> None:
        self.bot = bot
        # Before the cog is added (and the tree synced): the catalogue's choices.
        for command in (self.video, self.extend, self.imagine, self.transition):
            catalogue_options(command, bot.settings.catalogue)

    async def _params(self, source: JobSource, **options: Any) -> JobParams:
        settings = self.bot.settings
        defaults = Defaults(
            settings.default_model_name, settings.default_quality, settings.default_duration
        )
        effects = EffectList()
        if options.get("effect"):
            # Usually at hand: the member picked the effect from the list the autocomplete
            # just read. The wait is short so the command still answers within 3 s.
            effects = await self.bot.effects.current(wait=EFFECT_LIST_WAIT)
        return build_options(
            catalogue=settings.catalogue,
            defaults=defaults,
            effects=effects,
            source=source,
            **options,
        )

    @app_commands.command(name="video", description="Animate an image into a video")
    @app_commands.guild_only()
    @app_commands.describe(
        image="A PNG, JPEG or WebP picture to animate", **_OPTION_HELP, **_AUDIO_HELP
    )
    async def video(
        self,
        interaction: discord.Interaction[PixBot],
        image: discord.Attachment,
        prompt: str,
        negative_prompt: str | None = None,
        model: str | None = None,
        quality: str | None = None,
        duration: int | None = None,
        motion: str | None = None,
        style: StyleChoice | None = None,
        seed: Seed | None = None,
        effect: str | None = None,
        audio: bool | None = None,
    ) -> None:
        params = await self._params(
            JobSource.IMAGE,
            prompt=prompt,
            negative_prompt=negative_prompt,
            model=model,
            quality=quality,
            duration=duration,
            motion=motion,
            style=style,
            seed=seed,
            effect=effect,
            audio=bool(audio),
        )
        await self.bot.intake.precheck(interaction, params)
        check_declared_image(image.filename, image.content_type, image.size)
        prepared = await within_deadline(
            interaction, _download(self.bot, image, prepare_image, IMAGE_MAX_BYTES)
        )
        params = _note_scaling(params, prepared, "The image")
        await self.bot.intake.accept(
            interaction, params, upload=_job_input(prepared), prechecked=True
        )

    @app_commands.command(name="imagine", description="Make a video from text alone")
    @app_commands.guild_only()
    @app_commands.describe(**_IMAGINE_HELP, **_AUDIO_HELP)
    async def imagine(
        self,
        interaction: discord.Interaction[PixBot],
        prompt: str,
        aspect_ratio: str | None = None,
        negative_prompt: str | None = None,
        model: str | None = None,
        quality: str | None = None,
        duration: int | None = None,
        motion: str | None = None,
        style: StyleChoice | None = None,
        seed: Seed | None = None,
        audio: bool | None = None,
    ) -> None:
        params = await self._params(
            JobSource.TEXT,
            audio=bool(audio),
            prompt=prompt,
            aspect_ratio=aspect_ratio,
            negative_prompt=negative_prompt,
            model=model,
            quality=quality,
            duration=duration,
            motion=motion,
            style=style,
            seed=seed,
        )
        await self.bot.intake.accept(interaction, params, kind=JobKind.TEXT)

    @app_commands.command(
        name="transition", description="Make a video that moves from a first frame to a last one"
    )
    @app_commands.guild_only()
    @app_commands.describe(**_TRANSITION_HELP, **_AUDIO_HELP)
    async def transition(
        self,
        interaction: discord.Interaction[PixBot],
        first: discord.Attachment,
        last: discord.Attachment,
        prompt: str,
        negative_prompt: str | None = None,
        model: str | None = None,
        quality: str | None = None,
        duration: int | None = None,
        motion: str | None = None,
        style: StyleChoice | None = None,
        seed: Seed | None = None,
        audio: bool | None = None,
    ) -> None:
        params = await self._params(
            JobSource.FRAMES,
            audio=bool(audio),
            prompt=prompt,
            negative_prompt=negative_prompt,
            model=model,
            quality=quality,
            duration=duration,
            motion=motion,
            style=style,
            seed=seed,
        )
        await self.bot.intake.precheck(interaction, params)
        # Both are checked as /video's image is, before anything is charged: the declared
        # type and size of both first, then each file's bytes.
        for frame in (first, last):
            check_declared_image(frame.filename, frame.content_type, frame.size)

        async def download_both() -> tuple[PreparedMedia, PreparedMedia]:
            first_frame = await _download(self.bot, first, prepare_image, IMAGE_MAX_BYTES)
            last_frame = await _download(self.bot, last, prepare_image, IMAGE_MAX_BYTES)
            return first_frame, last_frame

        first_frame, last_frame = await within_deadline(interaction, download_both())
        params = _note_scaling(params, first_frame, "The first image")
        params = _note_scaling(params, last_frame, "The last image")
        await self.bot.intake.accept(
            interaction,
            params,
            kind=JobKind.TRANSITION,
            upload=_job_input(first_frame),
            last_upload=_job_input(last_frame),
            prechecked=True,
        )

    @app_commands.command(name="extend", description="Continue a video with a new prompt")
    @app_commands.guild_only()
    @app_commands.describe(
        video="An MP4, MOV or WebM clip to continue (up to 30 s, 50 MB, 1920 px)",
        job="The id of a finished job of this server to continue",
        **_OPTION_HELP,
        **_AUDIO_HELP,
    )
    async def extend(
        self,
        interaction: discord.Interaction[PixBot],
        prompt: str,
        video: discord.Attachment | None = None,
        job: app_commands.Range[int, 1] | None = None,
        negative_prompt: str | None = None,
        model: str | None = None,
        quality: str | None = None,
        duration: int | None = None,
        motion: str | None = None,
        style: StyleChoice | None = None,
        seed: Seed | None = None,
        effect: str | None = None,
        audio: bool | None = None,
    ) -> None:
        if (video is None) == (job is None):
            raise UserFacingError(
                "Give exactly one source: `video` (upload a clip) or `job` (the id of a "
                "finished job), not both and not neither."
            )
        params = await self._params(
            JobSource.VIDEO if video is not None else JobSource.JOB,
            prompt=prompt,
            negative_prompt=negative_prompt,
            model=model,
            quality=quality,
            duration=duration,
            motion=motion,
            style=style,
            seed=seed,
            effect=effect,
            audio=bool(audio),
        )
        await self.bot.intake.precheck(interaction, params)
        if job is not None:
            parent = await self.bot.store.jobs.get(job)
            problem = usable_source(parent, interaction.guild_id)
            if problem is NotUsable.MISSING or parent is None:
                raise UserFacingError(f"There is no job #{job} in this server: check `/jobs`.")
            if problem is NotUsable.UNFINISHED:
                raise UserFacingError(
                    f"Job #{job} is {parent.state.value}, not finished: extend a finished job."
                )
            if problem is NotUsable.REMOVED:
                # As the Extend button: a result removed for breaking the rules stays gone.
                raise UserFacingError(
                    f"Job #{job} was removed by a moderator: extend another finished job."
                )
            if parent.user_id != interaction.user.id and not _can_see(interaction, parent):
                # An id proves nothing: someone else's result is theirs to continue only
                # where this member could see it anyway (and press its Extend button).
                raise UserFacingError(
                    f"Job #{job} is not yours and its result is in a channel you cannot see: "
                    "extend one of your own finished jobs (`/jobs` lists them)."
                )
            # Left out, audio follows the source: a job with sound is continued with sound.
            inherit = audio is None and params.audio != parent.params.asks_for_sound
            if inherit:
                params = params.model_copy(update={"audio": parent.params.asks_for_sound})
            await self.bot.intake.accept(
                interaction,
                params,
                kind=JobKind.EXTEND,
                parent_job_id=parent.id,
                # With the audio changed, the price changed: checked again.
                prechecked=not inherit,
            )
            return
        assert video is not None
        check_declared_video(video.filename, video.content_type, video.size)
        prepared = await within_deadline(
            interaction, _download(self.bot, video, prepare_video, VIDEO_MAX_BYTES)
        )
        await self.bot.intake.accept(
            interaction, params, kind=JobKind.EXTEND, upload=_job_input(prepared), prechecked=True
        )

    @video.autocomplete("effect")
    @extend.autocomplete("effect")
    @guarded_autocomplete
    async def effect_autocomplete(
        self, interaction: discord.Interaction[PixBot], current: str
    ) -> list[app_commands.Choice[str]]:
        # The operator's effects (PIXVERSE_EFFECTS), else PixVerse's list, cached: the
        # first look may wait for PixVerse, never past Discord's 3 s (bot/jobs/effects.py).
        effects = await self.bot.effects.current()
        # The value is the template id: it is what PixVerse needs, and it stays exact when a
        # name is cut to Discord's 100 characters or two effects share one.
        return [
            app_commands.Choice(name=effect.name[:100], value=str(effect.template_id))
            for effect in effects.search(current)
        ]

    @extend.autocomplete("job")
    @guarded_autocomplete
    async def job_autocomplete(
        self, interaction: discord.Interaction[PixBot], current: str
    ) -> list[app_commands.Choice[int]]:
        if interaction.guild_id is None:
            return []
        jobs = await self.bot.store.jobs.finished_for_user(
            interaction.guild_id, interaction.user.id, current.strip().lstrip("#"), limit=25
        )
        return [
            app_commands.Choice(
                name=f"#{job.id} · {prompt_start(job.params.prompt, 80)}", value=job.id
            )
            for job in jobs
        ]


def _can_see(interaction: discord.Interaction[Any], job: Job) -> bool:
    guild, member = interaction.guild, interaction.user
    channel_id = job.status_channel_id or job.channel_id
    channel = guild.get_channel_or_thread(channel_id) if guild is not None else None
    if channel is None or not isinstance(member, discord.Member):
        return False
    return channel.permissions_for(member).view_channel


async def _download(
    bot: PixBot, attachment: discord.Attachment, prepare: Any, max_bytes: int
) -> PreparedMedia:
    # Discord's attachment URLs expire: the bytes are kept with the job until PixVerse has them.
    # Only from Discord's own hosts (bot/pixverse/hosts.py), capped and bounded in time.
    try:
        data = await fetch(
            bot.http_session,
            attachment.url,
            allowed=discord_attachments(discord.http.Route.BASE),
            what="an attachment",
            max_bytes=max_bytes,
            time_limit=ATTACHMENT_TIMEOUT,
        )
    except (DownloadFailed, DownloadRefused) as exc:
        raise UserFacingError(
            f"I could not download `{attachment.filename}` from Discord ({exc}): attach it again."
        ) from None
    result: PreparedMedia = await asyncio.to_thread(prepare, data, attachment.filename)
    return result


def _note_scaling(params: JobParams, prepared: PreparedMedia, what: str) -> JobParams:
    """Tell the member when their picture was scaled down for PixVerse."""
    if prepared.scaled_from is None:
        return params
    width, height = prepared.scaled_from
    note = (
        f"{what} was {width}×{height}; it was scaled to "
        f"{prepared.width}×{prepared.height} for PixVerse."
    )
    return params.model_copy(update={"notes": (*params.notes, note)})


def _job_input(prepared: PreparedMedia) -> JobInput:
    return JobInput(
        filename=prepared.filename, content_type=prepared.content_type, data=prepared.data
    )


async def setup(bot: PixBot) -> None:
    await bot.add_cog(Generate(bot))
