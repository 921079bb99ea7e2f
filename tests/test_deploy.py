"""The deployment files agree with the bot: the compose file's processes split the shards
exactly once, with settings the bot accepts, and Prometheus scrapes every one of them.

Read as text (PyYAML is not a dependency): the checks are about a few known lines."""

from __future__ import annotations

import re
from pathlib import Path

from bot.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yml"
PROMETHEUS = ROOT / "deploy" / "prometheus.yml"


def bot_services(text: str) -> dict[str, str]:
    """Each top-level service named bot-* and the text of its block."""
    blocks = re.split(r"(?m)^  (?=[a-z][\w-]*:\s*$)", text.split("\nservices:\n", 1)[1])
    services = {}
    for block in blocks:
        name = block.split(":", 1)[0]
        if name.startswith("bot-"):
            services[name] = block
    return services


def test_the_compose_bots_run_every_shard_exactly_once_with_settings_the_bot_accepts() -> None:
    text = COMPOSE.read_text(encoding="utf-8")
    [count] = {int(n) for n in re.findall(r'SHARD_COUNT: "(\d+)"', text)}
    services = bot_services(text)
    assert len(services) >= 2
    shards: list[int] = []
    for name, block in services.items():
        [ids] = re.findall(r'SHARD_IDS: "([\d,]+)"', block)
        settings = Settings(  # type: ignore[call-arg]
            _env_file=None, discord_token="t", simulate=True, shard_count=count, shard_ids=ids
        )
        assert settings.shards, name
        shards.extend(settings.shards)
    assert sorted(shards) == list(range(count))


def test_prometheus_scrapes_the_metrics_port_of_every_compose_bot() -> None:
    compose = COMPOSE.read_text(encoding="utf-8")
    [port] = set(re.findall(r'METRICS_PORT: "(\d+)"', compose))
    assert "METRICS_HOST: 0.0.0.0" in compose  # reachable from the prometheus container
    targets = set(re.findall(r'"([\w-]+):(\d+)"', PROMETHEUS.read_text(encoding="utf-8")))
    assert targets == {(name, port) for name in bot_services(compose)}
    assert "./deploy/prometheus.yml:/etc/prometheus/prometheus.yml" in compose
