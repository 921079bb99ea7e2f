"""Turns a ``JobUpdate`` into what a status message shows.

Pure: the same update always renders the same text, so the reporter can compare renders
and edit only when what the member sees changes. Elapsed time is shown in coarse steps for
the same reason.
"""

from __future__ import annotations

from dataclasses import dataclass

import discord

from bot.jobs.progress import JobUpdate
from bot.store.models import JobState

_STATE_LABEL = {
    JobState.QUEUED: "⏳ Queued",
    JobState.UPLOADING: "📤 Uploading the input to PixVerse",
    JobState.SUBMITTED: "📨 Submitted to PixVerse",
    JobState.GENERATING: "🎬 Generating",
    JobState.DONE: "✅ Done",
    JobState.FAILED: "❌ Failed",
    JobState.CANCELLED: "🚫 Cancelled",
}
_COLOUR = {
    JobState.DONE: discord.Colour.green(),
    JobState.FAILED: discord.Colour.red(),
    JobState.CANCELLED: discord.Colour.dark_grey(),
}
# What the status message calls a job of each kind (JobKind values); a plain "video" else.
_WHAT = {
    "extend": "extension",
    "reroll": "re-roll",
    "text": "text video",
    "transition": "transition",
    "sound": "sound",
}
_BAR_CELLS = 10
PROMPT_PREVIEW = 80
# Elapsed time is shown in steps this long: a status that changed every second would be
# edited constantly.
ELAPSED_STEP = 5
SOUND_CHOSEN_BY_PIXVERSE = "(no description: PixVerse picks the sound)"


@dataclass(frozen=True, slots=True)
class Rendered:
    content: str
    embed: discord.Embed

    @property
    def key(self) -> tuple[str, str]:
        """Equal keys mean the member would see no difference."""
        return self.content, repr(sorted(self.embed.to_dict().items()))


def prompt_start(prompt: str, limit: int = PROMPT_PREVIEW) -> str:
    flat = " ".join(prompt.split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


def format_seconds(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 60}m {seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def progress_bar(elapsed: float, estimate: float) -> str:
    fraction = min(elapsed / estimate, 0.95) if estimate > 0 else 0.0
    filled = int(fraction * _BAR_CELLS)
    return "▰" * filled + "▱" * (_BAR_CELLS - filled)


def _state_line(update: JobUpdate) -> str:
    label = _STATE_LABEL[update.state]
    if update.state is JobState.QUEUED:
        if update.waiting:
            return f"{label}: {update.waiting}"
        if update.queue_position:
            return f"{label}: position {update.queue_position} in line"
        return f"{label}: starting soon"
    if update.waiting and update.state in (JobState.UPLOADING, JobState.SUBMITTED):
        return f"{label}: {update.waiting}"
    if update.state is JobState.GENERATING and update.elapsed is not None:
        elapsed = update.elapsed - update.elapsed % ELAPSED_STEP
        if update.estimate:
            remaining = max(update.estimate - elapsed, 0)
            eta = f"about {format_seconds(remaining)} left" if remaining >= 5 else "almost done"
            bar = progress_bar(elapsed, update.estimate)
            return f"{label} {bar} {format_seconds(elapsed)} elapsed, {eta}"
        return f"{label}: {format_seconds(elapsed)} elapsed"
    if update.state is JobState.FAILED and update.error:
        return f"{label}: {update.error}"
    if update.state is JobState.CANCELLED and update.error:
        return f"{label}: {update.error}"
    return label


def render(update: JobUpdate) -> Rendered:
    options = update.params
    what = _WHAT.get(update.kind, "video")
    simulated = " · simulated" if update.simulated else ""
    content = f"<@{update.owner_id}>'s {what} · job #{update.job_id}{simulated}"

    embed = discord.Embed(
        title=f"Job #{update.job_id} · {_state_line(update)}"[:256],
        description=(
            discord.utils.escape_markdown(prompt_start(options.prompt, 300))
            or (SOUND_CHOSEN_BY_PIXVERSE if options.add_sound else "")
        ),
        colour=_COLOUR.get(update.state, discord.Colour.blurple()),
    )
    embed.add_field(name="Model", value=options.model)
    embed.add_field(name="Quality", value=options.quality.value)
    embed.add_field(name="Duration", value=f"{options.duration} s")
    if options.aspect_ratio is not None:
        embed.add_field(name="Aspect ratio", value=options.aspect_ratio)
    if options.motion.value != "normal":
        embed.add_field(name="Motion", value=options.motion.value)
    if options.style is not None:
        embed.add_field(name="Style", value=options.style.value)
    if options.effect:
        embed.add_field(name="Effect", value=options.effect[:100])
    if options.audio:
        embed.add_field(name="Audio", value="on")
    if options.add_sound:
        embed.add_field(name="Sound", value="added to the video")
    elif options.seed is not None:
        embed.add_field(name="Seed", value=str(options.seed))
    if update.parent_job_id is not None:
        embed.add_field(name="From job", value=f"#{update.parent_job_id}")

    if update.state is JobState.DONE:
        embed.add_field(name="Credits spent", value=str(update.cost))
        if update.credits_left is not None:
            embed.add_field(name="Credits left today", value=str(update.credits_left))
        if update.video is None and update.video_url:
            embed.add_field(
                name="Video",
                value=(
                    f"[Download the video]({update.video_url}) "
                    f"({update.video_note or 'too large to attach here'})"
                )[:1024],
                inline=False,
            )
    elif update.state in (JobState.FAILED, JobState.CANCELLED):
        refund = f"{update.cost} credits returned" if update.refunded else "nothing charged"
        embed.add_field(name="Credits", value=refund)
    else:
        embed.add_field(name="Cost", value=f"{update.cost} credits (reserved)")

    for note in options.notes:
        embed.add_field(name="Note", value=note[:1024], inline=False)
    if update.simulated:
        embed.set_footer(text="Simulated PixVerse: no credits were spent at PixVerse")
    return Rendered(content=content, embed=embed)
