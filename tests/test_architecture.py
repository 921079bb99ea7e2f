"""The rooms of the house: the core that knows nothing of Discord stays that way.

``bot/store``, ``bot/jobs``, ``bot/pixverse``, ``bot/simulator`` and the use cases in
``bot/service`` are used by tests, benchmarks and the simulator without a Discord client;
only ``bot/ui``, ``bot/app`` and the cogs speak Discord. Every import counts, type-only ones
included.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

BOT = Path(__file__).resolve().parents[1] / "bot"
DISCORD_FREE = ("store", "jobs", "pixverse", "simulator", "service")


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_imported_modules_sees_type_only_and_nested_imports(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from discord.ext import commands\n"
        "def f():\n    import discord\n"
    )
    assert {"discord", "discord.ext"} <= imported_modules(sample)


@pytest.mark.parametrize("room", DISCORD_FREE)
def test_room_does_not_import_discord(room):
    offenders = {
        str(path.relative_to(BOT.parent)): sorted(
            name for name in imported_modules(path) if name.split(".")[0] == "discord"
        )
        for path in sorted((BOT / room).rglob("*.py"))
    }
    assert not {file: names for file, names in offenders.items() if names}
