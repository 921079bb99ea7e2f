"""The Bot subclass: creates the shared resources once, loads the cogs, syncs the commands."""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import aiohttp
import discord
from discord.ext import commands

from bot.extensions import walk_extensions
from bot.jobs.effects import EffectLibrary, EffectsConfig, effect_library
from bot.jobs.observe import UNOBSERVED
from bot.jobs.runner import JobRunner, RunnerConfig
from bot.jobs.webhook import WebhookReceiver
from bot.metrics import GatewayState, Metrics, MetricsServer, Sources
from bot.pixverse import PixVerseClient
from bot.service import JobService
from bot.store import LeaseTerms, Limits, Store
from bot.store.jobs import forget_tokens_forever
from bot.sync import sync_commands
from bot.tree import PixTree
from bot.ui.buttons import (
    ExtendButton,
    RerollButton,
    SoundButton,
    answer_unrouted,
    result_view,
)
from bot.ui.context import UiServices
from bot.ui.intake import Intake
from bot.ui.moderation import LogBlockButton, LogRemoveButton, ModLog, ModLogReporter
from bot.ui.status import DiscordStatusReporter

if TYPE_CHECKING:
    from bot.settings import Settings
    from bot.simulator import Simulator, SimulatorConfig

log = logging.getLogger(__name__)
# Every component the bot sends; a custom_id none of them claims is answered as gone.
DYNAMIC_ITEMS = (RerollButton, ExtendButton, SoundButton, LogRemoveButton, LogBlockButton)

# What the bot needs in a channel: read it, post and edit its status messages, attach the
# finished video, show the result embed, and keep working in threads.
REQUIRED_PERMISSIONS = discord.Permissions(
    view_channel=True,
    send_messages=True,
    send_messages_in_threads=True,
    embed_links=True,
    attach_files=True,
    read_message_history=True,
)
INVITE_SCOPES = ("bot", "applications.commands")


def _log_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.error("Background task %s crashed", task.get_name(), exc_info=exc)


def invite_url(application_id: int) -> str:
    return discord.utils.oauth_url(
        application_id, permissions=REQUIRED_PERMISSIONS, scopes=INVITE_SCOPES
    )


class PixBot(commands.Bot):
    """One instance per process; everything shared hangs off it and is made in setup_hook."""

    http_session: aiohttp.ClientSession
    pixverse: PixVerseClient
    store: Store
    reporter: DiscordStatusReporter
    runner: JobRunner
    intake: Intake
    job_service: JobService
    ui: UiServices
    mod_log: ModLog
    effects: EffectLibrary

    def __init__(
        self,
        settings: Settings,
        *,
        force_global_sync: bool = False,
        runner_config: RunnerConfig | None = None,
        simulator_config: SimulatorConfig | None = None,
        effects_config: EffectsConfig | None = None,
        status_interval: float = 3.0,
        pixverse_options: Mapping[str, Any] | None = None,
        identify_wait: float = 5.0,
        **client_options: Any,
    ) -> None:
        # With METRICS_PORT, the bot's own registry; discord.py's session reports each
        # request to it (a trace config can only be given when the client is made).
        self.metrics = Metrics() if settings.metrics_port is not None else None
        if self.metrics is not None:
            client_options.setdefault("http_trace", self.metrics.discord_trace())
        # The bot never joins voice: silence discord.py's warnings about voice libraries.
        discord.VoiceClient.warn_nacl = False
        discord.VoiceClient.warn_dave = False
        super().__init__(
            # Slash commands only: the bot reads no messages, reactions, typing or presences,
            # so it asks for the guilds intent alone (interactions arrive without intents).
            command_prefix=commands.when_mentioned,
            help_command=None,
            intents=discord.Intents(guilds=True),
            tree_cls=PixTree,
            allowed_mentions=discord.AllowedMentions.none(),
            **client_options,
        )
        self.settings = settings
        self.force_global_sync = force_global_sync
        self._runner_config = runner_config
        self._simulator_config = simulator_config
        self._effects_config = effects_config
        self._status_interval = status_interval
        # PixVerseClient keywords (timeouts, retries): tests shorten them.
        self._pixverse_options = dict(pixverse_options or {})
        self._identify_wait = identify_wait
        self.simulator: Simulator | None = None
        self.webhooks: WebhookReceiver | None = None
        self.metrics_server: MetricsServer | None = None
        self._token_sweep: asyncio.Task[None] | None = None
        self.synced: list[str] = []
        self._closing = False

    @property
    def simulated(self) -> bool:
        return self.settings.simulate

    async def setup_hook(self) -> None:
        # Interactions may arrive before on_ready, so everything a command needs exists
        # by the end of this method; never wait for the gateway in here.
        self.http_session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=120, connect=15)
        )
        base_url, api_key = await self._pixverse_endpoint()
        self.pixverse = PixVerseClient(
            self.http_session,
            base_url=base_url,
            api_key=api_key,
            observer=self.metrics.pixverse_request if self.metrics else None,
            **self._pixverse_options,
        )
        pixverse = self.pixverse
        # /video effect offers the operator's effects (PIXVERSE_EFFECTS), else PixVerse's
        # list, read now in the background and kept an hour.
        self.effects = effect_library(
            self.settings.pixverse_effects,
            lambda page, size: pixverse.effect_templates(page=page, page_size=size),
            self._effects_config,
        )
        self.effects.start()
        self.store = await Store.open(
            self.settings.database,
            limits=Limits(
                self.settings.daily_credits,
                self.settings.max_jobs_per_user,
                budget_daily_credits=self.settings.budget_daily_credits,
                moderation_strikes=self.settings.moderation_strikes,
                command_cooldown_seconds=self.settings.command_cooldown_seconds,
            ),
            cost_overrides=self.settings.credit_costs,
            catalogue=self.settings.catalogue,
            # login() has fetched the bot's user: the author of the blocks strikes make.
            bot_user_id=self.user.id if self.user else 0,
            lease=self._lease_terms(),
        )
        await self.setup_services()
        for extension in walk_extensions():
            await self.load_extension(extension)
        try:
            self.synced = await sync_commands(
                self.tree,
                self.store.db,
                dev_guild_id=self.settings.dev_guild_id,
                force_global=self.force_global_sync,
            )
        except discord.HTTPException as exc:
            # The bot still answers the commands Discord already knows; the next start
            # (or `--sync`) tries again, since the stored hash was not updated.
            log.error("Discord refused the command sync (%s); commands may be out of date", exc)
        if self.application_id is not None:
            log.info("Invite the bot with: %s", invite_url(self.application_id))

    def _serves_guild(self, guild_id: int) -> bool:
        """Whether this process's shards carry the server (Discord's shard formula)."""
        count, mine = self.settings.shard_count, self.settings.shards
        return count is None or mine is None or (guild_id >> 22) % count in mine

    def _lease_terms(self) -> LeaseTerms | None:
        """On PostgreSQL, other processes may share the jobs: this one claims them under a
        lease (bot/store/leases.py), named so the operator can tell processes apart."""
        if self.settings.database_url is None:
            return None
        shards = self.settings.shards
        name = "shards-" + "-".join(map(str, shards)) if shards else "all-shards"
        owner = f"{socket.gethostname()}:{os.getpid()}:{name}:{secrets.token_hex(3)}"
        return LeaseTerms(owner, self.settings.job_lease_seconds)

    async def setup_services(self) -> None:
        """The job services: status messages, the runner, and the intake the cogs use."""
        self.reporter = DiscordStatusReporter(
            self,
            view_factory=result_view,
            min_interval=self._status_interval,
            # Other processes share the jobs: a state is shown only while the job is in it.
            shared=self.store.jobs if self.store.leases is not None else None,
        )
        settings = self.settings
        config = self._runner_config or RunnerConfig(
            max_active=settings.max_active_jobs,
            requests_per_second=settings.pixverse_requests_per_second,
            request_burst=max(1, round(settings.pixverse_requests_per_second)),
            webhooks=settings.pixverse_webhook_secret is not None,
            simulated=self.simulated,
            default_estimate=self.simulator.config.gen_time if self.simulator else None,
        )
        # Finished jobs also go to the server's moderation log (/mod log-channel), if any.
        self.mod_log = ModLog(self, self.store)
        reporter = ModLogReporter(self.reporter, self.mod_log)
        observer = self.metrics or UNOBSERVED
        self.runner = JobRunner(
            self.store,
            self.pixverse,
            reporter,
            config,
            notices=self.mod_log,
            observer=observer,
            shows_server=self._serves_guild if settings.shard_count is not None else None,
        )
        self.job_service = JobService(
            self.store, self.runner, alerts=self.mod_log, observer=observer
        )
        self.intake = Intake(self.job_service, self.reporter, simulated=self.simulated)
        self.ui = UiServices(self, self.store, self.runner, self.job_service, self.intake)
        # Result and log buttons carry their job id, so they work on messages sent before
        # a restart.
        self.add_dynamic_items(*DYNAMIC_ITEMS)
        await self.runner.start()
        # Interaction tokens stay in the database only while they work (bot/store/jobs.py).
        self._token_sweep = asyncio.create_task(
            forget_tokens_forever(self.store.jobs), name="forget-expired-tokens"
        )
        self._token_sweep.add_done_callback(_log_crash)
        secret, port = self.settings.pixverse_webhook_secret, self.settings.webhook_port
        if secret is not None and port is not None:
            self.webhooks = WebhookReceiver(secret.get_secret_value(), self.runner.result_ready)
            await self.webhooks.start(self.settings.webhook_host, port)
        if self.metrics is not None and self.settings.metrics_port is not None:
            sources = Sources(self.store, self.runner, self.gateway_state)
            self.metrics_server = MetricsServer(self.metrics, sources)
            await self.metrics_server.start(self.settings.metrics_host, self.settings.metrics_port)

    async def _pixverse_endpoint(self) -> tuple[str, str]:
        if not self.settings.simulate:
            return self.settings.pixverse_base_url, self.settings.pixverse_key
        from bot.simulator import Simulator, SimulatorConfig

        # The embedded simulator takes any non-empty key, so none is configured or sent; it
        # checks and prices jobs with the bot's own catalogue unless given another.
        config = self._simulator_config or SimulatorConfig(api_key=None)
        if config.catalogue is None:
            config = config.model_copy(update={"catalogue": self.settings.catalogue})
        self.simulator = Simulator(config)
        await self.simulator.start(host="127.0.0.1", port=0)
        log.info("Simulating PixVerse at %s: no credits are spent", self.simulator.base_url)
        return self.simulator.base_url, "simulated"

    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        # Discord takes one IDENTIFY per 5 s (per max_concurrency bucket), so every shard after
        # the first, and every re-identify, waits as discord.py's own hook does; tests shorten it.
        if not initial:
            await asyncio.sleep(self._identify_wait)

    def gateway_state(self) -> GatewayState:
        """Whether the gateway is connected: ready, not closed, and every shard this process
        runs (one without sharding) with an open connection, and its heartbeat latency."""
        if not self.is_ready() or self.is_closed():
            return GatewayState(ready=False)
        # An AutoShardedBot has shards (ShardInfo each); a plain Bot has one connection.
        shards = getattr(self, "shards", None)
        if isinstance(shards, Mapping):
            links = {
                shard_id: None if info.is_closed() else info.latency
                for shard_id, info in shards.items()
            }
        else:
            ws = self.ws
            links = {self.shard_id or 0: ws.latency if ws is not None and ws.open else None}
        return GatewayState(ready=True, shards=links)

    async def on_ready(self) -> None:
        user = self.user
        log.info(
            "Connected as %s (%s) to %d server(s)%s",
            user,
            user.id if user else "?",
            len(self.guilds),
            self.shards_text(),
        )

    def shards_text(self) -> str:
        """What the ready line says of shards: nothing when the gateway is not sharded."""
        shards = self.settings.shards
        if shards is None:
            return ""
        listed = ", ".join(str(shard_id) for shard_id in shards)
        noun = "shards" if len(shards) > 1 else "shard"
        return f" on {noun} {listed} of {self.settings.shard_count}"

    async def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        log.info("Shutting down")
        await self.teardown_services()
        await super().close()
        session = getattr(self, "http_session", None)
        if session is not None:
            await session.close()
        if self.simulator is not None:
            await self.simulator.stop()
        store = getattr(self, "store", None)
        if store is not None:
            await store.close()
        log.info("Shut down cleanly")

    async def teardown_services(self) -> None:
        """Stop the runner first: every job's state is persisted, so nothing is lost."""
        if self.metrics_server is not None:
            await self.metrics_server.stop()
        if self.webhooks is not None:
            await self.webhooks.stop()
        effects = getattr(self, "effects", None)
        if effects is not None:
            await effects.close()
        if self._token_sweep is not None:
            self._token_sweep.cancel()
            await asyncio.gather(self._token_sweep, return_exceptions=True)
        runner = getattr(self, "runner", None)
        if runner is not None:
            await runner.stop()
        mod_log = getattr(self, "mod_log", None)
        if mod_log is not None:
            await mod_log.close()
        reporter = getattr(self, "reporter", None)
        if reporter is not None:
            await reporter.close()

    async def on_interaction(self, interaction: discord.Interaction[Any]) -> None:
        await answer_unrouted(interaction, DYNAMIC_ITEMS)

    async def on_error(self, event_method: str, /, *args: Any, **kwargs: Any) -> None:
        log.exception("Unhandled error in %s", event_method)


class ShardedPixBot(PixBot, commands.AutoShardedBot):
    """PixBot on a sharded gateway: ``SHARD_COUNT`` shards in all, of which this process runs
    ``SHARD_IDS`` (all when unset). discord.py routes each guild to its shard
    (``(guild_id >> 22) % shard_count``); Discord sends a guild's events and interactions
    only to the connection of that shard, so this process answers its own shards' servers.
    Everything else (setup_hook, the runner, the cogs) is PixBot's."""

    def __init__(self, settings: Settings, **options: Any) -> None:
        if settings.shard_count is None:
            raise ValueError("ShardedPixBot needs SHARD_COUNT; use make_bot()")
        # None lets discord.py run every shard; a list picks some (it wants a list or tuple).
        shard_ids = sorted(settings.shard_ids) if settings.shard_ids is not None else None
        super().__init__(settings, shard_count=settings.shard_count, shard_ids=shard_ids, **options)

    async def on_shard_ready(self, shard_id: int) -> None:
        log.info(
            "Shard %d of %d connected (%d server(s))",
            shard_id,
            self.shard_count,
            sum(1 for guild in self.guilds if guild.shard_id == shard_id),
        )


def make_bot(settings: Settings, **options: Any) -> PixBot:
    """The bot these settings ask for: a sharded gateway when SHARD_COUNT is set, else one
    connection; ``options`` are PixBot's keywords."""
    if settings.shard_count is None:
        return PixBot(settings, **options)
    return ShardedPixBot(settings, **options)
