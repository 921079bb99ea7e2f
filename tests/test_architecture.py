"""The rooms of the house: the core that knows nothing of Discord stays that way.

``bot/store``, ``bot/jobs``, ``bot/pixverse``, ``bot/simulator``, the use cases in
``bot/service`` and the metrics in ``bot/metrics`` are used by tests, benchmarks and the
simulator without a Discord client; only ``bot/ui``, ``bot/app`` and the cogs speak Discord.
Every import counts, type-only ones included.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

BOT = Path(__file__).resolve().parents[1] / "bot"
DISCORD_FREE = ("store", "jobs", "pixverse", "simulator", "service", "metrics")


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


def module_name(path: Path) -> str:
    parts = list(path.relative_to(BOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def import_graph() -> dict[str, set[str]]:
    """``bot`` module -> the ``bot`` modules it imports (``from bot.x import y`` counts as
    ``bot.x.y`` when that is a module, else ``bot.x``)."""
    modules = {module_name(path): path for path in BOT.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        edges: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                edges.update(alias.name for alias in node.names if alias.name in modules)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for alias in node.names:
                    submodule = f"{node.module}.{alias.name}"
                    if submodule in modules:
                        edges.add(submodule)
                    elif node.module in modules:
                        edges.add(node.module)
        edges.discard(name)
        graph[name] = edges
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    visiting: list[str] = []
    done: set[str] = set()

    def visit(node: str) -> list[str] | None:
        if node in visiting:
            return [*visiting[visiting.index(node) :], node]
        if node in done:
            return None
        visiting.append(node)
        for target in sorted(graph.get(node, ())):
            cycle = visit(target)
            if cycle:
                return cycle
        visiting.pop()
        done.add(node)
        return None

    for start in sorted(graph):
        cycle = visit(start)
        if cycle:
            return cycle
    return None


def test_find_cycle_sees_a_cycle_and_accepts_a_tree():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_no_import_cycle_inside_bot():
    # A package's __init__ that re-exports its own submodules is not a cycle by itself: the
    # submodules import their siblings by full name, never the package.
    assert find_cycle(import_graph()) is None
