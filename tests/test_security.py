"""Security guarantees not covered elsewhere (SECURITY.md):

- SQL text is never built from values: a scan of every ``execute``-like call in ``bot/`` and
  ``cogs/`` (f-strings, ``%``, ``.format`` and ``+`` only over constants and the few vetted
  names below).
- Downloads only from allowed hosts (``bot/pixverse/hosts.py``): the allowlist itself, the
  PixVerse client and the redirects it follows, the result of a real job on a foreign host,
  and a member's attachment.
- Interaction tokens are kept only while they work: cleared when the final status is shown,
  and by the sweep once expired (also at start); deleted bytes are overwritten.
- Reprs hide secrets; members reach only their own jobs with ``/extend job`` and ``/jobs``.

The secrets-in-logs and secrets-in-the-database runs are in ``test_secrets_e2e.py``;
webhook verification is in ``test_webhook.py``.
"""

from __future__ import annotations

import ast
import asyncio
import re
import sqlite3
import textwrap
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import discord.http
import pytest
import yarl
from aiohttp import web
from conftest import World, png_bytes, status_text
from fakediscord import permissions
from store_fixtures import FakeClock, new_job, open_store

from bot.jobs.progress import JobUpdate, StatusTarget
from bot.logs import MASK, Redactor
from bot.pixverse import PixVerseClient
from bot.pixverse.client import MAX_DOWNLOAD_REDIRECTS
from bot.pixverse.errors import PixVerseError
from bot.pixverse.hosts import (
    DownloadFailed,
    DownloadRefused,
    HostAllowlist,
    discord_attachments,
    fetch,
    pixverse_results,
)
from bot.settings import Settings
from bot.simulator import Simulator, SimulatorConfig
from bot.simulator.faults import Route
from bot.store.db import _configure
from bot.store.models import JobState

ROOT = Path(__file__).resolve().parents[1]

# --- SQL only with parameters -----------------------------------------------------------------

SQL_METHODS = frozenset({"execute", "executemany", "executescript", "fetch_one", "fetch_all"})
# Names and attributes that reach SQL text, each vetted: (file, expression) -> why it is safe.
# A new entry needs the same kind of reason; a value from a member never qualifies.
VETTED = {
    ("bot/store/jobs.py", "extra"): (
        "_assignments: column names checked against UPDATABLE_FIELDS, values as parameters"
    ),
    ("bot/store/moderation.py", "self.table"): "_GuildList instances are module constants",
    ("bot/store/moderation.py", "self.column"): "_GuildList instances are module constants",
    ("bot/store/moderation.py", "self.order"): "_GuildList instances are module constants",
    ("bot/store/moderation.py", "assignments"): (
        "_change_settings: column names are the keyword names its callers in this module write"
    ),
    ("bot/store/moderation.py", "where"): "_search: its callers pass constant conditions",
    ("bot/store/db.py", "sql"): "the Database wrappers: their callers' SQL is checked",
    ("bot/store/migrations.py", "statement"): "split from MIGRATIONS, constant DDL",
    ("bot/store/pg.py", "ddl"): "MIGRATIONS' constant DDL in PostgreSQL's words",
    ("bot/store/jobs.py", "owning"): (
        "_owning: a constant SET clause; the owner and its lease are parameters"
    ),
    ("bot/store/move.py", "table"): (
        "migrate-to-postgres: table names read from the bot's own SQLite schema, quoted"
    ),
}
_CONSTANT = re.compile(r"^_?[A-Z][A-Z0-9_]*$")
_NUMERIC = frozenset({"int", "float", "len"})


class SqlScan:
    """Finds execute-like calls whose SQL text is built from anything but constants."""

    def __init__(self, source: str, name: str) -> None:
        self.name = name
        self.tree = ast.parse(source)
        self.parents: dict[ast.AST, ast.AST] = {}
        for node in ast.walk(self.tree):
            for child in ast.iter_child_nodes(node):
                self.parents[child] = node

    def violations(self) -> list[str]:
        found = []
        for node in ast.walk(self.tree):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            if node.func.attr not in SQL_METHODS:
                continue
            texts = list(node.args[:1]) + [k.value for k in node.keywords if k.arg == "sql"]
            for text in texts:
                if not self.safe(text, node, set()):
                    found.append(f"{self.name}:{node.lineno}: {ast.unparse(text)[:80]}")
        return found

    def safe(self, node: ast.AST, at: ast.AST, seen: set[str]) -> bool:
        if isinstance(node, (ast.Name, ast.Attribute)):
            if (self.name, ast.unparse(node)) in VETTED:
                return True
        match node:
            case ast.Constant():
                return True
            case ast.JoinedStr(values=values):
                return all(self.safe(v, at, seen) for v in values)
            case ast.FormattedValue(value=value):
                return self.safe(value, at, seen)
            case ast.BinOp(op=ast.Add(), left=left, right=right):
                return self.safe(left, at, seen) and self.safe(right, at, seen)
            case ast.IfExp(body=body, orelse=orelse):
                return self.safe(body, at, seen) and self.safe(orelse, at, seen)
            case ast.Call(func=ast.Name(id=func)) if func in _NUMERIC:
                return True  # a number cannot change the statement
            case ast.Call(func=ast.Attribute(attr="join", value=sep), args=[items]):
                return self.safe(sep, at, seen) and self.safe_items(items, at, seen)
            case ast.Name(id=name):
                return self.safe_name(name, at, seen)
        # % and .format, subscripts, attributes, any other call: not provably constant.
        return False

    def safe_items(self, node: ast.AST, at: ast.AST, seen: set[str]) -> bool:
        if isinstance(node, (ast.GeneratorExp, ast.ListComp)):
            # The loop variables are values of the iterable: only constant elements pass.
            targets = {
                n.id for g in node.generators for n in ast.walk(g.target) if isinstance(n, ast.Name)
            }
            used = {n.id for n in ast.walk(node.elt) if isinstance(n, ast.Name)}
            return not (targets & used) and self.safe(node.elt, at, seen)
        if isinstance(node, (ast.Tuple, ast.List)):
            return all(self.safe(e, at, seen) for e in node.elts)
        return False

    def safe_name(self, name: str, at: ast.AST, seen: set[str]) -> bool:
        if name in seen:
            return True  # already being checked further up
        seen = seen | {name}
        scope: ast.AST | None = self.parents.get(at)
        while scope is not None:
            if isinstance(scope, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                params = scope.args
                every = params.posonlyargs + params.args + params.kwonlyargs
                if any(p.arg == name for p in every):
                    return False  # whatever the caller passes
                values = self.assigned(scope, name)
                if values is not None:
                    return bool(values) and all(self.safe(v, v, seen) for v in values)
            scope = self.parents.get(scope)
        values = self.assigned(self.tree, name)
        if values is not None:
            return all(self.safe(v, v, seen) for v in values)
        # Imported: a module constant by name, anything else unknown.
        return bool(_CONSTANT.match(name))

    def assigned(self, scope: ast.AST, name: str) -> list[ast.AST] | None:
        """What ``name`` is assigned in ``scope`` (not in nested functions); None if never.
        An assignment that is not ``name = value`` (unpacking, a loop) counts as unsafe."""
        values: list[ast.AST] = []
        hit = False
        for node in self.own_nodes(scope):
            if isinstance(node, ast.Assign):
                for target in node.targets:
                    if isinstance(target, ast.Name) and target.id == name:
                        hit = True
                        values.append(node.value)
                    elif any(isinstance(n, ast.Name) and n.id == name for n in ast.walk(target)):
                        hit = True
                        values.append(ast.Name(id="<unpacked>"))
            elif isinstance(node, (ast.AnnAssign, ast.AugAssign)):
                if isinstance(node.target, ast.Name) and node.target.id == name:
                    hit = True
                    values.append(node.value or ast.Constant(None))
            elif isinstance(node, (ast.For, ast.AsyncFor, ast.With, ast.AsyncWith, ast.NamedExpr)):
                targets = (
                    [node.target]
                    if isinstance(node, (ast.For, ast.AsyncFor, ast.NamedExpr))
                    else [i.optional_vars for i in node.items if i.optional_vars]
                )
                if any(
                    isinstance(n, ast.Name) and n.id == name for t in targets for n in ast.walk(t)
                ):
                    hit = True
                    values.append(ast.Name(id="<loop>"))
        return values if hit else None

    def own_nodes(self, scope: ast.AST):
        stack = list(ast.iter_child_nodes(scope))
        while stack:
            node = stack.pop()
            yield node
            if not isinstance(
                node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)
            ):
                stack.extend(ast.iter_child_nodes(node))


def scan(source: str, name: str = "sample.py") -> list[str]:
    return SqlScan(textwrap.dedent(source), name).violations()


def test_sql_is_built_only_from_constants_and_vetted_names():
    problems = []
    files = sorted((ROOT / "bot").rglob("*.py")) + sorted((ROOT / "cogs").rglob("*.py"))
    for path in files:
        name = path.relative_to(ROOT).as_posix()
        problems += SqlScan(path.read_text(encoding="utf-8"), name).violations()
    assert problems == []


def test_every_vetted_name_is_still_used():
    # A vetted name whose code is gone must leave the list, or it could hide a new use.
    used = set()
    for file, expression in VETTED:
        source = (ROOT / file).read_text(encoding="utf-8")
        if re.search(rf"\{{{re.escape(expression)}\}}|\({re.escape(expression)}\b", source):
            used.add((file, expression))
    assert used == set(VETTED)


@pytest.mark.parametrize(
    "code",
    [
        'conn.execute(f"SELECT * FROM jobs WHERE user_id = {user_id}")',
        "conn.execute(\"SELECT * FROM jobs WHERE prompt = '%s'\" % prompt)",
        "conn.execute(\"SELECT * FROM jobs WHERE prompt = '{}'\".format(prompt))",
        'conn.execute("SELECT * FROM jobs WHERE prompt = \'" + prompt + "\'")',
        'conn.executescript(f"DELETE FROM jobs WHERE id = {job.id}")',
        'await self._db.fetch_all(f"SELECT * FROM jobs ORDER BY {order}")',
        "sql = f\"UPDATE jobs SET error = '{reason}'\"\nconn.execute(sql)",
        'cols = ", ".join(f"{k} = ?" for k in fields)\nconn.execute(f"UPDATE jobs SET {cols}")',
    ],
)
def test_the_sql_scan_sees_values_in_sql_text(code):
    source = "def f(conn, self, user_id, prompt, job, order, reason, fields):\n" + textwrap.indent(
        code, "    "
    )
    assert scan(source.replace("await ", "")) != []


def test_the_sql_scan_accepts_constants_and_parameters():
    source = """
    ACTIVE = "('queued', 'generating')"
    def f(conn, job_id, states):
        marks = ", ".join("?" for _ in states)
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        conn.execute(f"PRAGMA user_version = {version}")
        conn.execute(f"SELECT * FROM jobs WHERE state IN {ACTIVE} AND id = ?", (job_id,))
        conn.execute(f"SELECT * FROM jobs WHERE state IN ({marks})", states)
        sql = "SELECT 1" + " FROM jobs"
        conn.execute(sql)
    """
    assert scan(source) == []


# --- downloads only from allowed hosts -------------------------------------------------------


def test_pixverse_results_allow_its_cdn_and_the_base_host_only():
    allowed = pixverse_results("https://app-api.pixverse.ai")
    assert allowed.permits("https://media.pixverse.ai/pixverse%2Fmp4%2Fa.mp4")
    assert allowed.permits("https://app-api.pixverse.ai/x.mp4")
    assert allowed.permits("https://MEDIA.pixverse.ai./a.mp4")
    for url in (
        "http://media.pixverse.ai/a.mp4",  # https only with an https base
        "https://evil.example/a.mp4",
        "https://media.pixverse.ai.evil.example/a.mp4",
        "https://media.pixverse.ai@evil.example/a.mp4",
        "https://user@media.pixverse.ai/a.mp4",
        "https://media.pixverse.ai:8443/a.mp4",
        "file:///etc/passwd",
        "ftp://media.pixverse.ai/a.mp4",
        "https://media.pixverse.ai:99999/a.mp4",
        "//media.pixverse.ai/a.mp4",
        "",
    ):
        assert not allowed.permits(url), url


def test_a_plain_http_base_allows_http_on_that_host_and_port_only():
    allowed = pixverse_results("http://127.0.0.1:8765")
    assert allowed.permits("http://127.0.0.1:8765/media/v.mp4")
    assert allowed.permits("http://media.pixverse.ai/a.mp4")
    assert not allowed.permits("http://127.0.0.1:8766/media/v.mp4")
    assert not allowed.permits("http://localhost:8765/media/v.mp4")
    assert not allowed.permits("http://169.254.169.254/latest/meta-data/")


def test_discord_attachments_allow_discords_cdn_and_the_api_host():
    allowed = discord_attachments("https://discord.com/api/v10")
    assert allowed.permits("https://cdn.discordapp.com/attachments/1/2/cat.png?ex=1&hm=2")
    assert allowed.permits("https://media.discordapp.net/attachments/1/2/cat.png")
    assert not allowed.permits("http://cdn.discordapp.com/attachments/1/2/cat.png")
    assert not allowed.permits("https://cdn.discordapp.com.evil.example/cat.png")
    assert not allowed.permits("https://media.pixverse.ai/cat.png")


def test_a_refusal_logs_the_host_only(caplog):
    allowed = HostAllowlist.for_base("https://app-api.pixverse.ai", ["media.pixverse.ai"])
    with pytest.raises(DownloadRefused) as refused:
        allowed.check("https://evil.example/v.mp4?signature=s3cr3t", "a result video")
    assert refused.value.host == "evil.example"
    text = caplog.text + str(refused.value)
    assert "evil.example" in text and "s3cr3t" not in text and "/v.mp4" not in text


@pytest.fixture
async def files_server():
    """A loopback server counting what it serves: /v.mp4 (1 KiB), /big (2 MiB), /hop
    (a redirect to /v.mp4), /away (a redirect to /v.mp4 on the same server named "localhost",
    off any allowlist built for 127.0.0.1, with a signed query), /loop (a redirect to itself)."""
    served: list[str] = []

    async def video(request: web.Request) -> web.StreamResponse:
        served.append(request.path)
        if request.path == "/hop":
            raise web.HTTPFound("/v.mp4")
        if request.path == "/away":
            raise web.HTTPFound(f"http://localhost:{request.url.port}/v.mp4?signature=s3cr3t")
        if request.path == "/loop":
            raise web.HTTPTemporaryRedirect("/loop")
        return web.Response(body=b"\0" * (2 * 1024 * 1024 if request.path == "/big" else 1024))

    app = web.Application()
    app.router.add_get("/{name}", video)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    async with aiohttp.ClientSession() as session:
        yield session, port, served
    await runner.cleanup()


async def test_the_client_downloads_from_its_base_host(files_server):
    session, port, served = files_server
    client = PixVerseClient(session, base_url=f"http://127.0.0.1:{port}", api_key="k" * 20)
    assert len(await client.download(f"http://127.0.0.1:{port}/v.mp4", max_bytes=4096)) == 1024
    assert served == ["/v.mp4"]


async def test_the_client_never_fetches_a_result_on_another_host(files_server):
    session, port, served = files_server
    client = PixVerseClient(session, base_url=f"http://127.0.0.1:{port}", api_key="k" * 20)
    # Same server, other name: only the allowlist stands between the bot and the fetch.
    with pytest.raises(DownloadRefused):
        await client.download(f"http://localhost:{port}/v.mp4", max_bytes=4096)
    assert served == []


async def test_fetch_caps_size_refuses_redirects_and_foreign_hosts(files_server):
    session, port, served = files_server
    allowed = HostAllowlist.for_base(f"http://127.0.0.1:{port}", [])
    kwargs: dict[str, Any] = {"allowed": allowed, "what": "a file", "time_limit": 5}
    assert len(await fetch(session, f"http://127.0.0.1:{port}/v.mp4", max_bytes=4096, **kwargs))
    with pytest.raises(DownloadFailed, match="larger than"):
        await fetch(session, f"http://127.0.0.1:{port}/big", max_bytes=4096, **kwargs)
    with pytest.raises(DownloadFailed, match="HTTP 302"):
        await fetch(session, f"http://127.0.0.1:{port}/hop", max_bytes=4096, **kwargs)
    with pytest.raises(DownloadRefused):
        await fetch(session, f"http://localhost:{port}/v.mp4", max_bytes=4096, **kwargs)
    with pytest.raises(DownloadFailed, match="HTTP 302"):
        await fetch(session, f"http://127.0.0.1:{port}/away", max_bytes=4096, **kwargs)
    # Neither redirect was followed: no second /v.mp4, under either name.
    assert served == ["/v.mp4", "/big", "/hop", "/away"]


async def test_a_result_redirected_off_the_allowlist_is_never_fetched(files_server, caplog):
    session, port, served = files_server
    client = PixVerseClient(
        session, base_url=f"http://127.0.0.1:{port}", api_key="k" * 20, backoff_base=0.01
    )
    with pytest.raises(DownloadRefused) as refused:
        await client.download(f"http://127.0.0.1:{port}/away", max_bytes=4096)
    # Refused once, not retried; the off-list name (the same server) saw no request.
    assert served == ["/away"]
    assert refused.value.host == "localhost"
    text = caplog.text + str(refused.value)
    assert "Refused to download a result video from localhost" in caplog.text
    assert "s3cr3t" not in text


async def test_a_result_redirected_within_the_allowlist_is_followed(files_server):
    session, port, served = files_server
    client = PixVerseClient(session, base_url=f"http://127.0.0.1:{port}", api_key="k" * 20)
    assert len(await client.download(f"http://127.0.0.1:{port}/hop", max_bytes=4096)) == 1024
    assert served == ["/hop", "/v.mp4"]


async def test_a_result_redirected_in_circles_fails_after_a_few_hops(files_server):
    session, port, served = files_server
    client = PixVerseClient(
        session, base_url=f"http://127.0.0.1:{port}", api_key="k" * 20, max_attempts=1
    )
    with pytest.raises(PixVerseError, match="redirected more than"):
        await client.download(f"http://127.0.0.1:{port}/loop", max_bytes=4096)
    assert served == ["/loop"] * (MAX_DOWNLOAD_REDIRECTS + 1)


class _Redirect:
    """A 302 answer to ``url`` pointing at ``location``, as the client reads it."""

    status = 302

    def __init__(self, url: str, location: str) -> None:
        self.url = yarl.URL(url)
        self.headers = {"Location": location}

    async def __aenter__(self) -> _Redirect:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None


class _RedirectingSession:
    """Answers every GET with a 302 to ``location``, recording the URLs asked for; stands
    in for an https CDN, which a loopback test cannot serve."""

    def __init__(self, location: str) -> None:
        self.location = location
        self.asked: list[str] = []

    def get(self, url: Any, **kwargs: Any) -> _Redirect:
        self.asked.append(str(url))
        assert kwargs.get("allow_redirects") is False  # aiohttp would follow it unchecked
        return _Redirect(str(url), self.location)


@pytest.mark.parametrize(
    "location",
    [
        "http://media.pixverse.ai/pixverse%2Fmp4%2Fb.mp4",  # https only with an https base
        "//evil.example/b.mp4",  # scheme-relative: https://evil.example
        "https://media.pixverse.ai@evil.example/b.mp4",
        "https://media.pixverse.ai:8443/b.mp4",
        "file:///etc/passwd",
        "http://[::1",  # unparseable
    ],
)
async def test_a_result_redirected_off_the_rules_on_https_is_refused(location):
    session = _RedirectingSession(location)
    client = PixVerseClient(
        session,  # type: ignore[arg-type]
        base_url="https://app-api.pixverse.ai",
        api_key="k" * 20,
    )
    with pytest.raises(DownloadRefused):
        await client.download("https://media.pixverse.ai/pixverse%2Fmp4%2Fa.mp4", max_bytes=4096)
    assert session.asked == ["https://media.pixverse.ai/pixverse%2Fmp4%2Fa.mp4"]


async def test_a_result_on_a_foreign_host_is_linked_never_fetched(world: World, caplog):
    """The simulator answers with result URLs on "localhost" while the bot talks to it as
    127.0.0.1: the same server, so a fetch would show up in its request log."""
    sim = Simulator(SimulatorConfig(gen_time=0.3, seed=7))
    await sim.start()
    try:
        sim.config.public_base_url = f"http://localhost:{sim.port}"
        await world.start_bot(pixverse=sim)
        handle = await world.video()
        await handle.response(timeout=5)
        job = await world.job_final((await world.latest_job()).id)
        assert job.state is JobState.DONE
        assert job.result_url and job.result_url.startswith("http://localhost:")
        await world.until(lambda: "Done" in status_text(handle.original))
        assert not handle.original.files  # linked, not attached
        assert job.result_url in status_text(handle.original) or any(
            job.result_url in str(c) for c in handle.original.components
        )
        fetched = [r for r in sim.requests if r.route == Route.MEDIA and "/media/" in r.path]
        assert [r.path for r in fetched if r.method == "GET"] == []
        # Refused once and linked at once: a host off the list stays off it, so no retry.
        assert caplog.text.count("Refused to download a result video from localhost") == 1
    finally:
        while world.bots:
            await world.stop_bot()
        await sim.stop()


async def test_an_attachment_on_a_foreign_host_is_refused_unfetched(
    world: World, monkeypatch: pytest.MonkeyPatch
):
    # discord.py talks to the fake as "localhost"; the fake's attachment URLs say 127.0.0.1.
    localhost_api = world.fake.api_base.replace("127.0.0.1", "localhost")
    monkeypatch.setattr(discord.http.Route, "BASE", localhost_api)
    bot = await world.start_bot()
    handle = await world.video()
    response = await handle.response(timeout=10)
    assert response.ephemeral
    text = response.content or ""
    assert "could not download" in text and "not an allowed host" in text, text
    assert world.fake.file_downloads == []
    assert await bot.store.jobs.count_for_user(world.guild.id, world.member.id) == 0
    assert (await bot.store.ledger.quota(world.guild.id, world.member.id)).reserved == 0


# --- interaction tokens kept only while they work ---------------------------------------------


async def test_the_sweep_clears_tokens_once_expired(tmp_path):
    clock = FakeClock()
    async with open_store(tmp_path, clock) as store:
        expires = clock.now + timedelta(minutes=15)
        job = await store.jobs.create(
            new_job(1, interaction_token="tok-" + "a" * 60, interaction_expires_at=expires)
        )
        fresh = await store.jobs.create(
            new_job(
                2,
                interaction_token="tok-" + "b" * 60,
                interaction_expires_at=expires + timedelta(minutes=5),
            )
        )
        clock.advance(minutes=14)
        assert await store.jobs.forget_expired_tokens() == 0
        assert (await store.jobs.get(job.id)).interaction_token is not None
        clock.advance(minutes=2)
        assert await store.jobs.forget_expired_tokens() == 1
        assert (await store.jobs.get(job.id)).interaction_token is None
        assert (await store.jobs.get(fresh.id)).interaction_token is not None
        clock.advance(minutes=5)
        assert await store.jobs.forget_expired_tokens() == 1
        assert (await store.jobs.get(fresh.id)).interaction_token is None


async def test_a_token_without_an_expiry_is_not_kept(tmp_path):
    async with open_store(tmp_path, FakeClock()) as store:
        job = await store.jobs.create(new_job(1, interaction_token="tok-" + "c" * 60))
        assert await store.jobs.forget_expired_tokens() == 1
        assert (await store.jobs.get(job.id)).interaction_token is None


async def test_the_token_is_cleared_once_the_final_status_is_shown(tmp_path):
    clock = FakeClock()
    async with open_store(tmp_path, clock) as store:
        job = await store.jobs.create(
            new_job(
                1,
                interaction_token="tok-" + "d" * 60,
                interaction_expires_at=clock.now + timedelta(minutes=15),
            )
        )
        assert await store.jobs.finish_failed(job.id, "PixVerse failed")
        assert (await store.jobs.get(job.id)).interaction_token is not None  # still delivering
        assert await store.jobs.delivered(job.id)
        assert (await store.jobs.get(job.id)).interaction_token is None


async def test_an_expired_token_is_cleared_at_start(world: World, pixverse: Simulator):
    pixverse.config.gen_time = 60
    bot = await world.start_bot(pixverse=pixverse)
    handle = await world.video()
    await handle.response(timeout=5)
    job = await world.latest_job()
    async with asyncio.timeout(10):
        while (job := await bot.store.jobs.get(job.id)).pixverse_video_id is None:
            await asyncio.sleep(0.02)
    assert job.interaction_token is not None
    await world.stop_bot()
    # The job is more than 15 minutes old when the bot starts again.
    past = (datetime.now(UTC) - timedelta(minutes=1)).timestamp()
    conn = sqlite3.connect(world.tmp_path / "data" / "bot.sqlite3")
    with conn:
        conn.execute("UPDATE jobs SET interaction_expires_at = ? WHERE id = ?", (past, job.id))
    conn.close()

    bot = await world.start_bot(pixverse=pixverse)
    async with asyncio.timeout(5):
        while (await bot.store.jobs.get(job.id)).interaction_token is not None:
            await asyncio.sleep(0.02)
    # The job still finishes, through the channel.
    assert job.pixverse_video_id is not None
    pixverse.finish_now(job.pixverse_video_id)
    done = await world.job_final(job.id)
    assert done.state is JobState.DONE and done.interaction_token is None
    await world.until(lambda: "Done" in status_text(handle.original))
    assert handle.original.current.source == "channel"


def test_deleted_content_is_overwritten_in_the_file():
    conn = sqlite3.connect(":memory:")
    conn.execute("PRAGMA secure_delete = OFF")  # as some SQLite builds start
    _configure(conn, 1000)
    assert conn.execute("PRAGMA secure_delete").fetchone()[0] == 1
    conn.close()


# --- reprs ------------------------------------------------------------------------------------


def test_settings_and_client_reprs_hide_the_secrets():
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        discord_token="bot-token-SECRET-1234567890",
        pixverse_api_key="pv-key-SECRET-1234567890",
        pixverse_webhook_secret="whsec-SECRET-1234567890",
        webhook_port=8080,
    )
    client = PixVerseClient(
        None,  # type: ignore[arg-type]
        base_url=settings.pixverse_base_url,
        api_key=settings.pixverse_key,
    )
    text = " ".join([repr(settings), str(settings), repr(settings.model_dump()), repr(client)])
    assert "SECRET" not in text


INTERACTION_TOKEN = "aW50ZXJhY3Rpb246MTIzNDU2Nzg5MDEyMzQ1Njc4OTA6SECRETtoken"


async def test_jobs_and_status_targets_hide_the_interaction_token(tmp_path):
    clock = FakeClock()
    expires = clock.now + timedelta(minutes=15)
    new = new_job(1, interaction_token=INTERACTION_TOKEN, interaction_expires_at=expires)
    async with open_store(tmp_path, clock) as store:
        job = await store.jobs.create(new)
    assert job.interaction_token == INTERACTION_TOKEN  # still there to use
    update = JobUpdate.of(job, JobState.QUEUED, simulated=False)
    assert update.target.token == INTERACTION_TOKEN
    target = StatusTarget(channel_id=5, message_id=6, token=INTERACTION_TOKEN)
    for value in (new, job, update, target):
        assert INTERACTION_TOKEN not in repr(value), type(value).__name__
        assert INTERACTION_TOKEN not in str(value), type(value).__name__
    # Still compared: two jobs differing only in their token are not the same job.
    assert replace(job, interaction_token=None) != job


@pytest.mark.parametrize(
    "line",
    [
        f"StatusTarget(channel_id=5, token='{INTERACTION_TOKEN}', token_expires_at=1.0)",
        f'NewJob(guild_id=1, interaction_token="{INTERACTION_TOKEN}", cost=None)',
        f"call(access_token = '{INTERACTION_TOKEN}')",
        f"{{'token': '{INTERACTION_TOKEN}'}}",
    ],
)
def test_the_redactor_masks_a_token_in_keyword_form(line):
    redacted = Redactor([]).redact(line)
    assert INTERACTION_TOKEN not in redacted
    assert MASK in redacted


def test_the_redactor_leaves_keywords_that_hold_no_token():
    line = "StatusTarget(channel_id=5, token=None, token_expires_at=1.0, tokens=3)"
    assert Redactor([]).redact(line) == line


# --- members reach only their own jobs --------------------------------------------------------


async def test_extend_job_of_another_member_in_a_hidden_channel_is_refused(world: World):
    bot = await world.start_bot()
    theirs = await world.video(user=world.other, prompt="their lighthouse")
    await theirs.response(timeout=5)
    job = await world.job_final((await world.latest_job(world.other)).id)
    assert job.state is JobState.DONE
    elsewhere = world.fake.add_channel(world.guild, "lobby")
    world.fake.set_overwrite(world.channel, world.member, deny=permissions.VIEW_CHANNEL)

    async def extend_theirs() -> Any:
        handle = await world.fake.invoke(
            "extend",
            user=world.member,
            channel=elsewhere,
            options={"prompt": "and then it rains", "job": job.id},
        )
        return await handle.response(timeout=5)

    async def until_answer(accepted: Callable[[Any], bool]) -> Any:
        # The overwrite reaches the bot through the gateway: ask until it has arrived.
        async with asyncio.timeout(10):
            while not accepted(response := await extend_theirs()):
                await asyncio.sleep(0.05)
        return response

    # The id alone must not reach a result in a channel this member cannot read.
    response = await until_answer(lambda r: "not yours" in r.content)
    assert response.ephemeral
    assert await bot.store.jobs.count_for_user(world.guild.id, world.member.id) == 0
    assert len(bot.simulator.generate_requests) == 1  # theirs only

    # Where the member can see it, it is theirs to continue, as with the Extend button.
    world.fake.set_overwrite(world.channel, world.member, allow=permissions.VIEW_CHANNEL)
    await until_answer(lambda r: not r.ephemeral)
    assert await bot.store.jobs.count_for_user(world.guild.id, world.member.id) == 1


async def test_jobs_lists_the_members_jobs_and_none_of_anyone_elses(world: World):
    await world.start_bot()
    for user, prompt in ((world.other, "their secret dragon"), (world.member, "my own cat")):
        handle = await world.video(user=user, prompt=prompt)
        await handle.response(timeout=5)
        await world.job_final((await world.latest_job(user)).id)
    handle = await world.fake.invoke("jobs", user=world.member, channel=world.channel)
    response = await handle.response(timeout=5)
    assert response.ephemeral
    shown = repr(response.data)
    assert "my own cat" in shown
    assert "dragon" not in shown
    theirs = await world.latest_job(world.other)
    assert f"#{theirs.id}" not in shown


async def test_attachment_download_keeps_working_through_the_allowlist(world: World):
    # The fake Discord's attachments are on the API host in use (discord.http.Route.BASE).
    await world.start_bot()
    handle = await world.video(image=("cat.png", png_bytes(), "image/png"))
    assert not (await handle.response(timeout=5)).ephemeral
    assert len(world.fake.file_downloads) == 1
