"""The effects a member may choose for ``/video effect``: the operator's own list
(``PIXVERSE_EFFECTS``), or else PixVerse's effect template list, cached.

PixVerse's list (docs/pixverse.md, "Effects") is read a page at a time, at most
``max_pages`` pages, and kept for ``ttl`` (an hour). At most one listing is ever in flight:
callers that find the cache stale or empty share it (single flight). A caller with a list in
hand gets it at once while the refresh runs behind; a caller with none waits at most
``wait`` seconds — an autocomplete must answer within Discord's 3 s — and then gets what
there is. A failed listing keeps the previous list and is tried again after ``retry_after``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol

from bot.pixverse import EffectTemplatePage, PixVerseError
from bot.pixverse.models import TEMPLATE_PAGE_SIZES

log = logging.getLogger(__name__)

ListPage = Callable[[int, int], Awaitable[EffectTemplatePage]]  # (page, page size) -> page
Source = Literal["operator", "pixverse"]
CHOICES_MAX = 25  # Discord shows at most 25 autocomplete choices
CHOICE_TEXT_MAX = 100  # … each name and value at most 100 characters


@dataclass(frozen=True, slots=True)
class Effect:
    name: str
    template_id: int


@dataclass(frozen=True, slots=True)
class EffectList:
    """The effects known at one moment, and where they come from."""

    effects: tuple[Effect, ...] = ()
    source: Source = "operator"
    loaded: bool = True  # False: PixVerse's list has not been read (yet)

    @classmethod
    def operator(cls, mapping: Mapping[str, int]) -> EffectList:
        effects = (Effect(name, template_id) for name, template_id in mapping.items())
        return cls(tuple(sorted(effects, key=lambda e: e.name.casefold())), "operator")

    @classmethod
    def from_pixverse(cls, effects: Iterable[Effect]) -> EffectList:
        return cls(tuple(sorted(effects, key=lambda e: e.name.casefold())), "pixverse")

    def find(self, requested: str) -> Effect | None:
        """The effect named ``requested`` (any case), or whose template id it is (what an
        autocomplete choice sends)."""
        wanted = " ".join(requested.split()).casefold()
        for effect in self.effects:
            if effect.name.casefold() == wanted or str(effect.template_id) == wanted:
                return effect
        return None

    def search(self, query: str, *, limit: int = CHOICES_MAX) -> list[Effect]:
        """Effects whose name contains ``query``: those starting with it first."""
        wanted = " ".join(query.split()).casefold()
        hits = [e for e in self.effects if wanted in e.name.casefold()]
        hits.sort(key=lambda e: not e.name.casefold().startswith(wanted))  # stable: A–Z kept
        return hits[:limit]

    def unknown(self, requested: str) -> str:
        """Why ``requested`` cannot be used, and how to find an effect that can."""
        if self.source == "operator":
            if not self.effects:
                return "No effects are available on this bot: leave the effect option out."
            listed = ", ".join(effect.name for effect in self.effects)
            return f"There is no effect {requested!r}: choose one of {listed}."
        if not self.loaded:
            return (
                "PixVerse's effect list could not be read just now: try again in a minute, "
                "or leave the effect option out."
            )
        if not self.effects:
            return "PixVerse lists no effects right now: leave the effect option out."
        return (
            f"There is no PixVerse effect {requested!r}: start typing in the `effect` option "
            "and pick one of the names it offers (they come from PixVerse's effect list), "
            "or leave the effect option out."
        )


class EffectLibrary(Protocol):
    """What the commands ask: the effects to offer and to accept, now."""

    async def current(self, *, wait: float | None = None) -> EffectList: ...

    def start(self) -> None: ...

    async def close(self) -> None: ...


class OperatorEffects:
    """``PIXVERSE_EFFECTS``: only these, and PixVerse's list is never read."""

    def __init__(self, mapping: Mapping[str, int]) -> None:
        self._list = EffectList.operator(mapping)

    async def current(self, *, wait: float | None = None) -> EffectList:
        return self._list

    def start(self) -> None:
        pass

    async def close(self) -> None:
        pass


@dataclass(frozen=True, slots=True)
class EffectsConfig:
    ttl: float = 3600.0  # refreshed hourly
    retry_after: float = 60.0  # after a failed listing
    wait: float = 2.0  # the longest a caller without a list waits for one
    page_size: int = 100
    max_pages: int = 20  # 2,000 effects; a reseller counts "more than 900"
    load_timeout: float = 90.0  # one whole listing, every page and the client's retries

    def __post_init__(self) -> None:
        if self.page_size not in TEMPLATE_PAGE_SIZES:
            raise ValueError(f"page_size must be one of {TEMPLATE_PAGE_SIZES}")


@dataclass(slots=True)
class _Cache:
    effects: EffectList = field(default_factory=lambda: EffectList((), "pixverse", False))
    expires: float = float("-inf")  # monotonic; fresh until then
    retry_at: float = float("-inf")  # monotonic; no listing before then (after a failure)


class PixVerseEffects:
    """PixVerse's effect templates, cached (see the module's docstring)."""

    def __init__(
        self,
        list_page: ListPage,
        config: EffectsConfig | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._list_page = list_page
        self.config = config or EffectsConfig()
        self._clock = clock
        self._cache = _Cache()
        self._loading: asyncio.Task[None] | None = None
        self.listings = 0  # listings started (each may read several pages)

    def start(self) -> None:
        """Read the list now, in the background, so the first member finds it ready."""
        self._refresh()

    async def close(self) -> None:
        task, self._loading = self._loading, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def current(self, *, wait: float | None = None) -> EffectList:
        cache = self._cache
        if self._clock() < cache.expires:
            return cache.effects
        task = self._refresh()
        if task is not None and not cache.effects.loaded:
            # Nothing to offer yet: wait for the listing, but never past the caller's bound
            # (shielded: a caller giving up must not cancel the listing the others share).
            limit = self.config.wait if wait is None else wait
            await asyncio.wait({task}, timeout=max(0.0, limit))
        return self._cache.effects

    def _refresh(self) -> asyncio.Task[None] | None:
        """The listing in flight, started if none is and the last failure is old enough."""
        if self._loading is not None and not self._loading.done():
            return self._loading
        if self._clock() < self._cache.retry_at:
            return None
        self.listings += 1
        task = asyncio.create_task(self._load(), name="pixverse-effect-list")
        task.add_done_callback(_log_crash)
        self._loading = task
        return task

    async def _load(self) -> None:
        try:
            async with asyncio.timeout(self.config.load_timeout):
                effects = await self._read_pages()
        except (PixVerseError, TimeoutError) as exc:
            self._failed(repr(exc))
            return
        except Exception:
            log.exception("Reading PixVerse's effect list failed unexpectedly")
            self._failed("a bug")
            return
        self._cache = _Cache(
            effects=EffectList.from_pixverse(effects), expires=self._clock() + self.config.ttl
        )
        log.info("Read %d effect(s) from PixVerse's effect list", len(effects))

    def _failed(self, why: str) -> None:
        log.warning(
            "Could not read PixVerse's effect list (%s); keeping the %d effect(s) known, "
            "trying again in %.0f s",
            why,
            len(self._cache.effects.effects),
            self.config.retry_after,
        )
        self._cache.retry_at = self._clock() + self.config.retry_after

    async def _read_pages(self) -> list[Effect]:
        size = self.config.page_size
        by_id: dict[int, Effect] = {}
        names: set[str] = set()
        skipped = 0
        for number in range(1, self.config.max_pages + 1):
            page = await self._list_page(number, size)
            skipped += page.skipped
            for template in page.templates:
                if template.template_id in by_id:
                    continue
                name = template.name[:CHOICE_TEXT_MAX]
                if name.casefold() in names:
                    # Two effects of one name: the id tells them apart in the picker.
                    suffix = f" #{template.template_id}"
                    name = template.name[: CHOICE_TEXT_MAX - len(suffix)] + suffix
                names.add(name.casefold())
                by_id[template.template_id] = Effect(name, template.template_id)
            seen = (number - 1) * size + len(page.templates) + page.skipped
            last = len(page.templates) + page.skipped < size
            if last or (page.total is not None and seen >= page.total):
                break
        else:
            log.warning(
                "PixVerse's effect list has more than %d pages; the rest is not offered",
                self.config.max_pages,
            )
        if skipped:
            log.warning("%d effect(s) of PixVerse's list had no usable id or name", skipped)
        return list(by_id.values())


def effect_library(
    operator: Mapping[str, int], list_page: ListPage, config: EffectsConfig | None = None
) -> EffectLibrary:
    """The operator's effects when ``PIXVERSE_EFFECTS`` names any, else PixVerse's list."""
    if operator:
        return OperatorEffects(operator)
    return PixVerseEffects(list_page, config)


def _log_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.error("Reading PixVerse's effect list crashed", exc_info=exc)
