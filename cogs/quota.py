"""/quota for members and the /quota-admin group for moderators."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

import discord
from discord import app_commands
from discord.ext import commands

from bot.errors import UserFacingError, require_guild, require_manage_server
from bot.pixverse.rules import Combination
from bot.store.models import AuditEntry, QuotaView, ServerView

if TYPE_CHECKING:
    from bot.app import PixBot

Credits = app_commands.Range[int, 0, 1_000_000]
SignedCredits = app_commands.Range[int, -1_000_000, 1_000_000]
_SOURCE = {"own": "set for you", "role": "from your roles", "default": "server default"}
_NO_PINGS = discord.AllowedMentions.none()
# Audit actions whose target_id is a role, not a member: they are mentioned as roles.
_ROLE_TARGETS = frozenset({"quota.role_daily"})


def _when(moment: datetime) -> str:
    stamp = int(moment.timestamp())
    return f"<t:{stamp}:t> (<t:{stamp}:R>)"


def prices_text(bot: PixBot) -> str:
    """What a video costs, from the model catalogue: the defaults' price and the cheapest."""
    settings, jobs = bot.settings, bot.store.jobs
    params_price = jobs.combination_price(
        Combination(
            settings.default_model_name, settings.default_quality, settings.default_duration
        )
    )
    return (
        f"{params_price} with the defaults ({settings.default_model_name} · "
        f"{settings.default_quality.value} · {settings.default_duration} s); "
        f"from {jobs.cheapest} for the shortest, lowest-quality video"
    )


def quota_embed(
    view: QuotaView, *, title: str, for_admin: bool = False, prices: str | None = None
) -> discord.Embed:
    source = _SOURCE[view.allowance_source]
    if for_admin:
        source = {"own": "own value", "role": "from roles", "default": "DAILY_CREDITS"}[
            view.allowance_source
        ]
    embed = discord.Embed(
        title=title,
        description=f"**{view.left}** credits left today",
        colour=discord.Colour.red() if view.blocked else discord.Colour.blurple(),
    )
    embed.add_field(name="Daily allowance", value=f"{view.allowance} ({source})")
    embed.add_field(name="Bonus", value=str(view.bonus))
    embed.add_field(name="Used today", value=str(view.used_today))
    embed.add_field(name="Reserved by running jobs", value=str(view.reserved))
    if view.server_cap > 0:
        embed.add_field(
            name="Server cap today",
            value=f"{view.server_left} of {view.server_cap} left for the whole server",
        )
    embed.add_field(name="Resets", value=_when(view.resets_at), inline=False)
    if prices is not None:
        embed.add_field(name="A video costs", value=prices, inline=False)
    if view.blocked:
        reason = f": {view.block_reason}" if view.block_reason else ""
        embed.add_field(name="Blocked", value=f"Cannot start jobs{reason}", inline=False)
    embed.set_footer(text="Left = allowance + bonus − used today − reserved")
    return embed


def server_embed(view: ServerView, title: str) -> discord.Embed:
    embed = discord.Embed(title=title, colour=discord.Colour.blurple())
    cap = "none" if view.server_cap <= 0 else f"{view.server_cap} credits a day"
    embed.add_field(name="Server cap", value=cap)
    embed.add_field(name="Spent today", value=str(view.used_today))
    embed.add_field(name="Reserved", value=str(view.reserved))
    if view.role_dailies:
        roles = "\n".join(f"<@&{role}>: {daily}" for role, daily in view.role_dailies.items())
        embed.add_field(name="Role allowances", value=roles[:1024], inline=False)
    embed.add_field(name="Resets", value=_when(view.resets_at), inline=False)
    return embed


def _role_ids(member: discord.Member | discord.User) -> list[int]:
    return [role.id for role in member.roles] if isinstance(member, discord.Member) else []


def _audit_line(entry: AuditEntry) -> str:
    mention = "<@&{}>" if entry.action in _ROLE_TARGETS else "<@{}>"
    target = f" → {mention.format(entry.target_id)}" if entry.target_id else ""
    change = ""
    if entry.before or entry.after:
        keys = sorted(set(entry.before) | set(entry.after))
        parts = [f"{k}: {entry.before.get(k, '–')} → {entry.after.get(k, '–')}" for k in keys]
        change = " (" + ", ".join(parts) + ")"
    reason = f" · {entry.reason}" if entry.reason else ""
    stamp = int(entry.created_at.timestamp())
    return f"<t:{stamp}:f> <@{entry.actor_id}> **{entry.action}**{target}{change}{reason}"


class Quota(commands.Cog):
    def __init__(self, bot: PixBot) -> None:
        self.bot = bot

    @app_commands.command(name="quota", description="Your credits left today and when they reset")
    @app_commands.guild_only()
    async def quota(self, interaction: discord.Interaction[PixBot]) -> None:
        guild_id = require_guild(interaction)
        view = await self.bot.store.ledger.quota(
            guild_id,
            interaction.user.id,
            role_ids=_role_ids(interaction.user),
        )
        await interaction.response.send_message(
            embed=quota_embed(view, title="Your credits", prices=prices_text(self.bot)),
            ephemeral=True,
        )


@app_commands.guild_only()
@app_commands.default_permissions(manage_guild=True)
class QuotaAdmin(commands.GroupCog, group_name="quota-admin"):
    """Moderators steer members' credits; every change is audited."""

    def __init__(self, bot: PixBot) -> None:
        self.bot = bot
        super().__init__()

    async def interaction_check(self, interaction: discord.Interaction[Any]) -> bool:
        require_manage_server(interaction, "use /quota-admin")
        return True

    async def _reply(self, interaction: discord.Interaction[PixBot], embed: discord.Embed) -> None:
        await interaction.response.send_message(
            embed=embed, ephemeral=True, allowed_mentions=_NO_PINGS
        )

    async def _change_member(
        self,
        interaction: discord.Interaction[PixBot],
        user: discord.Member,
        title: str,
        change: Callable[..., Awaitable[QuotaView]],
        *args: Any,
    ) -> None:
        """Apply one audited change to a member and answer with their new state."""
        view = await change(
            require_guild(interaction),
            interaction.user.id,
            user.id,
            *args,
            role_ids=_role_ids(user),
        )
        await self._reply(interaction, quota_embed(view, title=title, for_admin=True))

    @app_commands.command(name="show", description="A member's allowance, usage and status")
    @app_commands.describe(user="The member to look at")
    async def show(self, interaction: discord.Interaction[PixBot], user: discord.Member) -> None:
        view = await self.bot.store.admin.show(
            require_guild(interaction), user.id, role_ids=_role_ids(user)
        )
        await self._reply(
            interaction, quota_embed(view, title=f"Credits of {user.display_name}", for_admin=True)
        )

    @app_commands.command(name="set", description="Set a member's own daily allowance")
    @app_commands.describe(user="The member", daily="Credits per UTC day (overrides the default)")
    async def set_daily(
        self, interaction: discord.Interaction[PixBot], user: discord.Member, daily: Credits
    ) -> None:
        title = f"{user.display_name}: daily allowance set to {daily}"
        await self._change_member(interaction, user, title, self.bot.store.admin.set_daily, daily)

    @app_commands.command(name="grant", description="Give a member one-off bonus credits")
    @app_commands.describe(user="The member", credits="Bonus credits (negative to take back)")
    async def grant(
        self, interaction: discord.Interaction[PixBot], user: discord.Member, credits: SignedCredits
    ) -> None:
        if credits == 0:
            raise UserFacingError(
                "Granting 0 credits changes nothing: give a positive or negative number."
            )
        verb = "granted" if credits > 0 else "took back"
        title = f"{user.display_name}: {verb} {abs(credits)} credits"
        await self._change_member(interaction, user, title, self.bot.store.admin.grant, credits)

    @app_commands.command(name="reset", description="Clear a member's usage for today")
    @app_commands.describe(user="The member")
    async def reset(self, interaction: discord.Interaction[PixBot], user: discord.Member) -> None:
        title = f"{user.display_name}: today's usage cleared"
        await self._change_member(interaction, user, title, self.bot.store.admin.reset)

    @app_commands.command(name="block", description="Stop a member from starting jobs")
    @app_commands.describe(user="The member", reason="Why (shown to them when they try)")
    async def block(
        self,
        interaction: discord.Interaction[PixBot],
        user: discord.Member,
        reason: app_commands.Range[str, 1, 300] | None = None,
    ) -> None:
        title = f"{user.display_name} is blocked"
        await self._change_member(interaction, user, title, self.bot.store.admin.block, reason)

    @app_commands.command(name="unblock", description="Let a blocked member start jobs again")
    @app_commands.describe(user="The member")
    async def unblock(self, interaction: discord.Interaction[PixBot], user: discord.Member) -> None:
        title = f"{user.display_name} is unblocked"
        await self._change_member(interaction, user, title, self.bot.store.admin.unblock)

    @app_commands.command(name="server-cap", description="A daily credit cap for the whole server")
    @app_commands.describe(credits="Credits per UTC day for everyone together (0 = no cap)")
    async def server_cap(self, interaction: discord.Interaction[PixBot], credits: Credits) -> None:
        view = await self.bot.store.admin.set_server_cap(
            require_guild(interaction), interaction.user.id, credits
        )
        title = "Server cap removed" if credits == 0 else f"Server cap set to {credits} a day"
        await self._reply(interaction, server_embed(view, title))

    @app_commands.command(
        name="role-daily", description="The daily allowance for members with a role"
    )
    @app_commands.describe(
        role="The role", credits="Credits per UTC day for its members (0 = remove)"
    )
    async def role_daily(
        self, interaction: discord.Interaction[PixBot], role: discord.Role, credits: Credits
    ) -> None:
        view = await self.bot.store.admin.set_role_daily(
            require_guild(interaction), interaction.user.id, role.id, credits
        )
        title = (
            f"{role.name}: role allowance removed"
            if credits == 0
            else f"{role.name}: {credits} credits a day"
        )
        await self._reply(interaction, server_embed(view, title))

    @app_commands.command(name="top", description="The members who used the most credits")
    @app_commands.describe(period="Today or this week (UTC, from Monday)")
    async def top(
        self, interaction: discord.Interaction[PixBot], period: Literal["day", "week"] = "day"
    ) -> None:
        entries = await self.bot.store.admin.top(require_guild(interaction), period, limit=10)
        label = "today" if period == "day" else "this week"
        lines = [
            f"{rank}. <@{entry.user_id}> · {entry.credits} credits · {entry.jobs} job(s)"
            for rank, entry in enumerate(entries, start=1)
        ]
        embed = discord.Embed(
            title=f"Top members {label}",
            description="\n".join(lines) or f"Nobody has used credits {label}.",
            colour=discord.Colour.blurple(),
        )
        await self._reply(interaction, embed)

    @app_commands.command(name="audit", description="The most recent admin actions, newest first")
    @app_commands.describe(user="Only actions on or by this member")
    async def audit(
        self, interaction: discord.Interaction[PixBot], user: discord.Member | None = None
    ) -> None:
        entries = await self.bot.store.admin.audit(
            require_guild(interaction), user.id if user else None, limit=20
        )
        embed = discord.Embed(
            title="Admin actions" + (f" for {user.display_name}" if user else ""),
            description="\n".join(_audit_line(entry) for entry in entries)[:4096]
            or "No admin actions recorded yet.",
            colour=discord.Colour.blurple(),
        )
        await self._reply(interaction, embed)


async def setup(bot: PixBot) -> None:
    await bot.add_cog(Quota(bot))
    await bot.add_cog(QuotaAdmin(bot))
