"""Every cog, checked without Discord: the definitions Discord would refuse or show badly.

After python-discord's ``tests/bot/exts/test_cogs.py``: load each extension into a bot that
never logs in (no ``setup_hook``, so no store, PixVerse or simulator) and read its commands.
"""

from __future__ import annotations

import pkgutil
import re
from collections.abc import AsyncIterator, Iterator
from typing import Any

import discord
import pytest
from discord import app_commands

import cogs
from bot.app import PixBot
from bot.extensions import walk_extensions
from bot.settings import Settings

# Discord's rule for chat-input names: ^[-_\p{L}\p{N}\p{sc=Deva}\p{sc=Thai}]{1,32}$, lowercase.
NAME = re.compile(r"^[-_\w]{1,32}$")
ADMIN_GROUPS = {"quota-admin", "mod"}
MAX_COMMAND_CHARS = 4000  # name, description and every option's, choice's and value's text


def make_bot() -> PixBot:
    return PixBot(Settings(_env_file=None, discord_token="x", simulate=True))  # type: ignore[call-arg]


async def loaded(*extensions: str) -> PixBot:
    bot = make_bot()
    for extension in extensions:
        await bot.load_extension(extension)
    return bot


@pytest.fixture
async def bot() -> AsyncIterator[PixBot]:
    bot = await loaded(*walk_extensions())
    try:
        yield bot
    finally:
        await bot.close()


def top_level(bot: PixBot) -> list[Any]:
    return list(bot.tree.get_commands())


def walk(bot: PixBot) -> Iterator[app_commands.Command[Any, ..., Any] | app_commands.Group]:
    """Every chat-input command, group and subcommand, top level first."""
    for command in bot.tree.get_commands(type=discord.AppCommandType.chat_input):
        yield command
        if isinstance(command, app_commands.Group):
            yield from command.walk_commands()


def options(bot: PixBot) -> Iterator[tuple[str, app_commands.Parameter]]:
    for command in walk(bot):
        if isinstance(command, app_commands.Command):
            for parameter in command.parameters:
                yield f"/{command.qualified_name} {parameter.display_name}", parameter


def text_size(payload: Any) -> int:
    """What Discord counts toward a command's 4,000 characters."""
    if isinstance(payload, list):
        return sum(text_size(item) for item in payload)
    if not isinstance(payload, dict):
        return 0
    total = sum(
        len(str(payload[key])) for key in ("name", "description", "value") if key in payload
    )
    return total + text_size(payload.get("options")) + text_size(payload.get("choices"))


def test_every_public_module_in_cogs_is_an_extension():
    modules = {
        info.name
        for info in pkgutil.walk_packages(cogs.__path__, "cogs.")
        if not info.name.rsplit(".", 1)[-1].startswith("_")
    }
    found = list(walk_extensions())
    assert found == sorted(found)
    assert set(found) == modules, f"modules without setup(): {sorted(modules - set(found))}"
    assert {"cogs.generate", "cogs.jobs", "cogs.quota"} <= set(found)


async def test_every_extension_loads_into_a_bot_that_never_started(bot):
    assert set(bot.extensions) == set(walk_extensions())
    names = {command.name for command in top_level(bot)}
    assert {"video", "extend", "imagine", "transition", "jobs", "cancel", "quota"} <= names
    assert "quota-admin" in names


async def test_no_two_extensions_define_the_same_command():
    seen: dict[tuple[str, str], str] = {}
    for extension in walk_extensions():
        bot = await loaded(extension)
        try:
            for command in top_level(bot):
                key = (type(command).__name__, command.name)
                assert key not in seen, f"{key[1]!r} in {extension} and {seen[key]}"
                seen[key] = extension
        finally:
            await bot.close()


async def test_subcommand_and_option_names_are_unique_where_they_live(bot):
    for command in walk(bot):
        if isinstance(command, app_commands.Group):
            names = [child.name for child in command.commands]
        else:
            names = [parameter.display_name for parameter in command.parameters]
        assert len(names) == len(set(names)), f"/{command.qualified_name}: {names}"


async def test_every_command_and_subcommand_has_a_short_description(bot):
    for command in walk(bot):
        description = command.description
        # discord.py puts "…" where a command has neither a description nor a docstring.
        assert description and description.strip() not in ("…", "..."), command.qualified_name
        assert len(description) <= 100, f"/{command.qualified_name}: {len(description)} chars"


async def test_every_option_has_a_short_description(bot):
    for where, parameter in options(bot):
        description = parameter.description
        assert description and description.strip() not in ("…", "..."), where
        assert len(description) <= 100, f"{where}: {len(description)} chars"


async def test_choices_fit_discords_limits(bot):
    for where, parameter in options(bot):
        assert len(parameter.choices) <= 25, where
        for choice in parameter.choices:
            assert 1 <= len(choice.name) <= 100, f"{where}: {choice.name!r}"


async def test_names_are_lowercase_and_at_most_32_characters(bot):
    for command in walk(bot):
        assert NAME.match(command.name), command.qualified_name
        assert command.name == command.name.lower(), command.qualified_name
    for where, parameter in options(bot):
        name = parameter.display_name
        assert NAME.match(name), where
        assert name == name.lower(), where


async def test_every_command_is_guild_only(bot):
    for command in top_level(bot):
        payload = command.to_dict(bot.tree)
        contexts = payload.get("contexts")
        assert contexts == [0] or (contexts is None and payload.get("dm_permission") is False), (
            command.name
        )


async def test_every_command_fits_discords_size_limit(bot):
    for command in top_level(bot):
        size = text_size(command.to_dict(bot.tree))
        assert size <= MAX_COMMAND_CHARS, f"/{command.name}: {size} characters"


async def test_admin_groups_default_to_manage_server(bot):
    groups = [command for command in top_level(bot) if command.name in ADMIN_GROUPS]
    assert groups, "no admin group loaded"
    for group in groups:
        assert group.default_permissions == discord.Permissions(manage_guild=True), group.name
