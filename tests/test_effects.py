"""The effect list: PixVerse's template pages parsed defensively, cached for an hour, read by
one listing at a time, kept when a listing fails, and never waited for past the bound."""

from __future__ import annotations

import asyncio

import pytest

from bot.jobs.effects import (
    Effect,
    EffectList,
    EffectsConfig,
    OperatorEffects,
    PixVerseEffects,
    effect_library,
)
from bot.pixverse import AuthError, EffectTemplatePage, TransientError


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Lister:
    """A template list of ``count`` effects, served a page at a time; it can be held (to
    see who waits) or made to fail."""

    def __init__(self, count: int = 3, *, names: list[str] | None = None) -> None:
        self.names = names or [f"Effect {n:02d}" for n in range(1, count + 1)]
        self.calls: list[tuple[int, int]] = []
        self.gate: asyncio.Event | None = None
        self.fail: Exception | None = None

    async def __call__(self, page: int, size: int) -> EffectTemplatePage:
        self.calls.append((page, size))
        if self.gate is not None:
            await asyncio.wait_for(self.gate.wait(), timeout=5)
        if self.fail is not None:
            raise self.fail
        entries = [
            {"template_id": 500 + index, "name": name}
            for index, name in enumerate(self.names, start=1)
        ][(page - 1) * size : page * size]
        return EffectTemplatePage.model_validate({"total": len(self.names), "data": entries})


def library(lister: Lister, clock: Clock, **config: float) -> PixVerseEffects:
    return PixVerseEffects(lister, EffectsConfig(**config), clock=clock)  # type: ignore[arg-type]


# -- parsing the answer --------------------------------------------------------------------


@pytest.mark.parametrize(
    "answer",
    [
        {"total": 2, "data": [{"template_id": 1, "name": "A"}, {"template_id": 2, "name": "B"}]},
        {"items": [{"template_id": 1, "display_name": "A"}, {"id": "2", "name": "B"}]},
        {"list": [{"templateId": 1, "template_name": "A"}, {"id": 2, "title": "B"}]},
        [{"template_id": 1, "name": "A"}, {"template_id": 2, "name": " B "}],
    ],
    ids=["restyle-shape", "reseller-shape", "other-names", "bare-list"],
)
def test_the_template_list_is_read_whatever_its_field_names(answer) -> None:
    page = EffectTemplatePage.model_validate(answer)
    assert [(t.template_id, t.name) for t in page.templates] == [(1, "A"), (2, "B")]
    assert page.skipped == 0


def test_entries_without_a_usable_id_or_name_are_skipped_not_fatal() -> None:
    page = EffectTemplatePage.model_validate(
        {
            "data": [
                {"template_id": 1, "name": "Good"},
                {"template_id": "x", "name": "Bad id"},
                {"template_id": 3},
                {"template_id": True, "name": "Bool id"},
                {"template_id": -4, "name": "Negative"},
                "not an object",
            ]
        }
    )
    assert [t.name for t in page.templates] == ["Good"]
    assert page.skipped == 5
    assert page.total is None


# -- the list a member chooses from --------------------------------------------------------


def test_an_effect_is_found_by_name_in_any_case_or_by_its_template_id() -> None:
    effects = EffectList.from_pixverse([Effect("Kiss kiss", 11), Effect("Muscle Surge", 22)])
    assert effects.find("kiss  KISS") == Effect("Kiss kiss", 11)
    assert effects.find("22") == Effect("Muscle Surge", 22)
    assert effects.find("Dance") is None


def test_search_puts_names_starting_with_the_text_first_and_offers_at_most_25() -> None:
    effects = EffectList.from_pixverse(
        [Effect("Big kiss", 1), Effect("Kiss kiss", 2), Effect("Muscle", 3)]
    )
    assert [e.name for e in effects.search("kiss")] == ["Kiss kiss", "Big kiss"]
    many = EffectList.from_pixverse(Effect(f"E{n}", n) for n in range(40))
    assert len(many.search("")) == 25


def test_an_unknown_pixverse_effect_says_how_to_find_one() -> None:
    effects = EffectList.from_pixverse([Effect("Kiss kiss", 11)])
    assert "start typing in the `effect` option" in effects.unknown("Dance")
    unread = EffectList((), "pixverse", loaded=False)
    assert "could not be read just now" in unread.unknown("Dance")
    assert "choose one of Kiss kiss" in EffectList.operator({"Kiss kiss": 11}).unknown("x")


async def test_the_operators_effects_are_the_only_ones_and_pixverse_is_never_asked() -> None:
    lister = Lister()
    chosen = effect_library({"Kiss kiss": 11}, lister)  # type: ignore[arg-type]
    assert isinstance(chosen, OperatorEffects)
    chosen.start()
    effects = await chosen.current()
    assert effects.effects == (Effect("Kiss kiss", 11),)
    assert lister.calls == []
    assert isinstance(effect_library({}, lister), PixVerseEffects)  # type: ignore[arg-type]


# -- caching, single flight, failures ------------------------------------------------------


async def test_one_listing_serves_every_caller_until_the_ttl() -> None:
    lister, clock = Lister(), Clock()
    effects = library(lister, clock, ttl=3600)
    for _ in range(20):
        listed = await effects.current()
        assert [e.name for e in listed.effects] == ["Effect 01", "Effect 02", "Effect 03"]
    assert lister.calls == [(1, 100)]
    assert effects.listings == 1


async def test_after_the_ttl_the_old_list_is_served_while_one_refresh_runs() -> None:
    lister, clock = Lister(), Clock()
    effects = library(lister, clock, ttl=60)
    await effects.current()
    lister.names.append("Effect 04")
    clock.now += 61
    lister.gate = asyncio.Event()  # the refresh hangs until released
    stale = await asyncio.wait_for(effects.current(), timeout=1)  # no wait for the refresh
    assert len(stale.effects) == 3
    await asyncio.wait_for(effects.current(), timeout=1)
    assert effects.listings == 2  # the second caller joined the refresh in flight
    lister.gate.set()
    async with asyncio.timeout(2):
        while len((await effects.current()).effects) != 4:
            await asyncio.sleep(0.01)
    assert effects.listings == 2


async def test_concurrent_callers_share_one_listing() -> None:
    lister, clock = Lister(), Clock()
    lister.gate = asyncio.Event()
    effects = library(lister, clock, wait=2.0)
    callers = [asyncio.create_task(effects.current()) for _ in range(10)]
    await asyncio.sleep(0.05)
    assert lister.calls == [(1, 100)]
    lister.gate.set()
    results = await asyncio.wait_for(asyncio.gather(*callers), timeout=3)
    assert all(len(r.effects) == 3 for r in results)
    assert effects.listings == 1


async def test_a_caller_with_no_list_waits_no_longer_than_its_bound() -> None:
    lister, clock = Lister(), Clock()
    lister.gate = asyncio.Event()
    effects = library(lister, clock, wait=2.0)
    loop = asyncio.get_running_loop()
    started = loop.time()
    listed = await effects.current(wait=0.2)
    assert loop.time() - started < 1.0
    assert not listed.loaded and listed.effects == ()
    lister.gate.set()  # the listing was not cancelled by the caller giving up
    async with asyncio.timeout(2):
        while not (await effects.current(wait=0.5)).loaded:
            await asyncio.sleep(0.01)
    assert effects.listings == 1


async def test_a_failed_listing_keeps_the_previous_list_and_is_retried_later() -> None:
    lister, clock = Lister(), Clock()
    effects = library(lister, clock, ttl=60, retry_after=30)
    await effects.current()
    clock.now += 61
    lister.fail = TransientError("PixVerse is down")
    kept = await effects.current()  # the stale list at once; the refresh fails behind it
    await asyncio.sleep(0.05)
    assert [e.name for e in kept.effects] == ["Effect 01", "Effect 02", "Effect 03"]
    assert len((await effects.current()).effects) == 3
    assert effects.listings == 2  # no new listing before retry_after
    clock.now += 31
    lister.fail = None
    lister.names.append("Effect 04")
    await effects.current()
    async with asyncio.timeout(2):
        while len((await effects.current()).effects) != 4:
            await asyncio.sleep(0.01)
    assert effects.listings == 3


async def test_a_first_listing_that_fails_leaves_the_list_unread_until_the_retry() -> None:
    lister, clock = Lister(), Clock()
    lister.fail = AuthError("bad key")
    effects = library(lister, clock, retry_after=30)
    first = await effects.current(wait=1.0)
    assert not first.loaded
    assert not (await effects.current(wait=1.0)).loaded
    assert effects.listings == 1
    clock.now += 31
    lister.fail = None
    assert (await effects.current(wait=1.0)).loaded
    assert effects.listings == 2


# -- paging --------------------------------------------------------------------------------


async def test_every_page_is_read() -> None:
    lister, clock = Lister(25), Clock()
    effects = library(lister, clock, page_size=10)
    listed = await effects.current()
    assert len(listed.effects) == 25
    assert lister.calls == [(1, 10), (2, 10), (3, 10)]


async def test_a_full_last_page_stops_at_the_total() -> None:
    lister, clock = Lister(20), Clock()
    effects = library(lister, clock, page_size=10)
    assert len((await effects.current()).effects) == 20
    assert lister.calls == [(1, 10), (2, 10)]


async def test_paging_is_bounded() -> None:
    lister, clock = Lister(100), Clock()
    effects = library(lister, clock, page_size=10, max_pages=3)
    assert len((await effects.current()).effects) == 30
    assert len(lister.calls) == 3


async def test_two_effects_of_one_name_are_told_apart_by_id() -> None:
    lister, clock = Lister(names=["Hug", "Hug", "Dance"]), Clock()
    effects = library(lister, clock)
    names = sorted(e.name for e in (await effects.current()).effects)
    assert names == ["Dance", "Hug", "Hug #502"]


def test_only_page_sizes_pixverse_accepts_are_configurable() -> None:
    with pytest.raises(ValueError, match="page_size"):
        EffectsConfig(page_size=30)
