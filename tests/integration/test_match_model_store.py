"""The learned match model through the services, on every storage backend: estimated from the
store's own candidate pairs, stored with its version (each estimate the next), used by
`mergeCandidates` once it separates matches, and the rules scorer answering until then."""

from __future__ import annotations

import asyncio
import multiprocessing
import random
import threading
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest

from app.domain.errors import LimitExceeded
from app.domain.events import RawIdentifier
from app.domain.matching import RULES_SCORER, MatchFields, MatchScore, PairScorer, score_pair
from app.domain.matching import index as match_index
from app.domain.matching.candidates import Named
from app.domain.matching.fields import normalised_values
from app.domain.matching.learned import value_key
from app.domain.merge_protection import MergeProtection
from app.scoring_processes import ScoringProcesses
from app.services import match_candidates, match_model, merging, privacy, profiles, review_list
from app.services.identity_policy import IdentityPolicy
from app.services.ports import ProfileStore
from app.store.sqlite.store import SQLiteStore

T = TypeVar("T")
NO_AUTO = IdentityPolicy(protection=MergeProtection(automatic_merges=False))
GIVEN = ["olivia", "lucas", "emma", "noah", "mila", "hugo", "lena", "adam", "zoe", "tom", "ines", "paul"]
SURNAMES = ["martin", "bernard", "dubois", "moreau", "laurent", "simon", "michel", "lefevre", "garcia"]


async def _write(store: ProfileStore, people: int, seed: int) -> list[str]:
    """`people` people written twice each (the second time with a letter dropped from one name or
    no birth date), under their own customer ids: the store's candidate pairs hold both matches and
    look-alikes (shared surnames, towns, given names)."""
    rng = random.Random(seed)
    ids = []
    for n in range(people):
        fields = {
            "first_name": rng.choice(GIVEN),
            "last_name": rng.choice(SURNAMES),
            "birth_date": (date(1950, 1, 1) + timedelta(days=rng.randrange(20_000))).isoformat(),
            "addresses": [{"street": f"{rng.randrange(1, 60)} rue Haute", "postcode": f"6900{n % 3}"}],
        }
        again = dict(fields)
        if n % 2:
            again["last_name"] = fields["last_name"][:-1]
        else:
            del again["birth_date"]
        for k, written in enumerate((fields, again)):
            identifiers = [RawIdentifier("customerId", f"c{n}-{k}")]
            profile = await profiles.upsert_profile(store, identifiers, written, source="crm", policy=NO_AUTO)
            ids.append(profile.id)
    return ids


async def test_a_model_is_estimated_from_the_stores_pairs_versioned_and_used(store: ProfileStore) -> None:
    ids = await _write(store, 60, seed=3)
    before = await match_candidates.candidates_for_profile(store, ids[0])
    assert {c.scorer for c in before} == {"rules"}  # no model yet

    first = await match_model.estimate_model(store, min_pairs=50)
    assert first is not None and first.version == 1 and first.separates()
    again = await match_model.estimate_model(store, min_pairs=50)
    assert again is not None and again.version == 2
    assert (again.m, again.u, again.pairs_used) == (first.m, first.u, first.pairs_used)  # stable on the same data
    stored = await match_model.stored_model(store)
    assert stored == again

    found = await match_candidates.candidates_for_profile(store, ids[0])
    assert ids[1] in {c.b for c in found}  # the same person written again
    assert {c.scorer for c in found} == {"fellegiSunter:v2"}
    # The stored model holds no name: a rare one outlived an erasure of its holder there.
    text = await store.read_meta(match_model.META_KEY)
    assert text is not None and not [name for name in [*GIVEN, *SURNAMES] if name in text]


async def test_a_new_model_is_used_by_every_process_from_its_next_request(tmp_path: Path) -> None:
    here, elsewhere = SQLiteStore(tmp_path / "cdp.sqlite3"), SQLiteStore(tmp_path / "cdp.sqlite3")  # two workers
    try:
        ids = await _write(here, 60, seed=3)
        assert (await match_model.estimate_model(here, min_pairs=50) or pytest.fail()).version == 1
        seen = await match_candidates.candidates_for_profile(elsewhere, ids[0])  # its process reads v1, keeps it
        assert {c.scorer for c in seen} == {"fellegiSunter:v1"}

        assert (await match_model.estimate_model(here, min_pairs=50) or pytest.fail()).version == 2
        seen = await match_candidates.candidates_for_profile(elsewhere, ids[0])
        assert {c.scorer for c in seen} == {"fellegiSunter:v2"}  # not the one it kept
    finally:
        await here.close()
        await elsewhere.close()


async def test_a_process_keeps_the_model_it_read_while_the_store_holds_the_same(
    store: ProfileStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Read again every CACHE_SECONDS and found unchanged, the model a process answers with is the
    one it read before, whose memos are warm (one made anew every minute started them cold); a new
    estimate, and an erasure rewriting the stored model, are read as before."""
    await _write(store, 60, seed=3)
    duplicates = await _rare_person(store)
    await match_model.estimate_model(store, min_pairs=50)
    monkeypatch.setattr(match_model, "CACHE_SECONDS", 0.0)  # read again at every request
    first = await match_model.current_scorer(store)
    assert isinstance(first, match_model.MatchModel)
    assert await match_model.current_scorer(store) is first

    await match_model.estimate_model(store, min_pairs=50)
    estimated = await match_model.current_scorer(store)
    assert isinstance(estimated, match_model.MatchModel) and estimated.version == first.version + 1
    assert await match_model.current_scorer(store) is estimated

    await privacy.delete_profile(store, duplicates[0], actor="t")  # its rare name leaves the stored model
    erased = await match_model.current_scorer(store)
    assert erased is not estimated and erased == await match_model.stored_model(store)
    assert isinstance(erased, match_model.MatchModel) and _kept(erased, "firstName", "zanzibar") is None


async def test_the_schedule_of_every_worker_makes_one_estimate_a_round(store: ProfileStore) -> None:
    await _write(store, 60, seed=3)
    first = await match_model.estimate_this_round(store, "worker 1", every_minutes=60)
    assert first is not None and first.version == 1
    assert await match_model.estimate_this_round(store, "worker 2", every_minutes=60) is None  # its round is taken
    assert await match_model.stored_model(store) == first


async def test_too_few_pairs_store_no_model_and_the_rules_answer(store: ProfileStore) -> None:
    ids = await _write(store, 3, seed=4)
    assert await match_model.estimate_model(store, min_pairs=1000) is None
    assert await match_model.stored_model(store) is None
    found = await match_candidates.candidates_for_profile(store, ids[0])
    assert {c.scorer for c in found} <= {"rules"}


async def test_an_estimate_over_more_pairs_than_it_compares_samples_every_keys_groups(store: ProfileStore) -> None:
    """A store with more candidate pairs than an estimate compares is sampled, each pair with the same
    chance whichever key holds it. Here 30 profiles share a birth date and nothing else (`b:`), and 30
    share a given name and a surname initial and nothing else (`g:`): the first 435 pairs in key
    order are all the birth date's, and a model estimated from them had never seen two strangers
    sharing a given name."""
    for n in range(30):
        born = {"first_name": f"{GIVEN[n % 12]}{'ae'[n // 12 % 2]}{n}", "last_name": f"{SURNAMES[n % 9]}x{n}"}
        jean = {"first_name": "Jean", "last_name": f"D{SURNAMES[n % 9]}{n}"}
        for name, fields in ((f"b{n}", {**born, "birth_date": "1980-03-12"}), (f"g{n}", jean)):
            await profiles.upsert_profile(store, [RawIdentifier("customerId", name)], fields, source="crm")
    model = await match_model.estimate_model(store, min_pairs=10, max_pairs=435)
    assert model is not None
    assert 300 < model.pairs_used <= 435  # about half of the 870 pairs
    assert "exact" in model.m["firstName"]  # Jean and Jean, from the given name's group
    assert any(level.endswith("+birthDate") for level in model.m["firstName"])  # from the birth date's


class _Pause:
    """Stops the first call of a whole-store job's step until `resume` is set (or 30 s pass): the job
    is then provably at that step while the test reads."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.resume = threading.Event()
        self.resumed_in_time: bool | None = None

    def hold(self) -> None:
        self.started.set()
        if self.resumed_in_time is None:
            self.resumed_in_time = self.resume.wait(timeout=30)


class _PausedScoring(_Pause):
    """A pair scorer that stops at its first pair, then scores as the rules do, without counting the
    names keys only two profiles hold (as a learned model does not)."""

    counts_unique_names = False

    def __call__(self, a: MatchFields, b: MatchFields) -> MatchScore:
        self.hold()
        return score_pair(a, b)

    def may_reach(self, a: Named, b: Named, min_score: float) -> bool:
        return RULES_SCORER.may_reach(a, b, min_score)

    def score_reaching(
        self, a: MatchFields, b: MatchFields, min_score: float, *, unique_names: bool = False
    ) -> MatchScore | None:
        self.hold()
        return RULES_SCORER.score_reaching(a, b, min_score)

    score_lookalike = score_reaching


class _PausedNormalising(_Pause):
    """Match fields normalised as `normalised_values` does, after a stop at the first profile."""

    def __call__(self, *values: Any) -> MatchFields:
        self.hold()
        return normalised_values(*values)


async def _read_while_paused(store: ProfileStore, paused: _Pause, job: asyncio.Task[T], read_id: str) -> T:
    """Reads a profile while `job` is held at its step: the step holds its thread until the read is
    done, so were the step run on the event loop the read could not run, the step would give up
    waiting after 30 s and `resumed_in_time` be False."""
    assert await asyncio.to_thread(paused.started.wait, 30)
    read = await store.get_profile(read_id)
    assert read is not None and not job.done()
    paused.resume.set()
    result = await job
    assert paused.resumed_in_time is True
    return result


async def _listed_while_paused(store: ProfileStore, paused: _Pause, pause: Callable[[], None], *, seed: int) -> None:
    """The review list made while `pause` holds one of its steps and the loop reads: the same list,
    every pair, as one made without a pause."""
    ids = await _write(store, 30, seed=seed)
    unpaused = await review_list.review_list(store, min_score=0.0, max_pairs=100_000)
    pause()
    job = asyncio.create_task(review_list.review_list(store, min_score=0.0, max_pairs=100_000))
    listed = await _read_while_paused(store, paused, job, ids[0])
    assert listed.pairs == unpaused.pairs and len(listed.pairs) > 30


async def test_the_review_list_scores_its_pairs_while_the_loop_answers_reads(
    store: ProfileStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    paused = _PausedScoring()
    # The list without a pause is scored by a scorer of the same kind, one that never stops: the rules
    # scorer itself also counts the names keys only two profiles hold, which another scorer does not.
    unpaused = _PausedScoring()
    unpaused.resume.set()

    async def scorer(_store: ProfileStore) -> PairScorer:
        return paused

    async def unpaused_scorer(_store: ProfileStore) -> PairScorer:
        return unpaused

    monkeypatch.setattr(review_list, "current_scorer", unpaused_scorer)
    await _listed_while_paused(
        store, paused, lambda: monkeypatch.setattr(review_list, "current_scorer", scorer), seed=4
    )


async def test_a_model_estimate_compares_its_pairs_while_the_loop_answers_reads(
    store: ProfileStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = await _write(store, 30, seed=5)
    paused = _PausedScoring()
    monkeypatch.setattr(match_model, "score_pair", paused)
    job = asyncio.create_task(match_model.estimate_model(store, min_pairs=10))
    model = await _read_while_paused(store, paused, job, ids[0])
    assert model is not None and model.pairs_used > 30


async def test_a_whole_store_job_normalises_match_fields_while_the_loop_answers_reads(
    store: ProfileStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    paused = _PausedNormalising()
    await _listed_while_paused(
        store, paused, lambda: monkeypatch.setattr(match_index, "normalised_values", paused), seed=6
    )


async def _rare_person(store: ProfileStore) -> list[str]:
    """One person written twice (two customer ids: duplicates), with a name nobody else has."""
    rare = {"first_name": "Zanzibar", "last_name": "Quixotissimo", "birth_date": "1970-03-04"}
    written = [
        await profiles.upsert_profile(
            store, [RawIdentifier("customerId", f"zq-{k}")], rare, source="crm", policy=NO_AUTO
        )
        for k in range(2)
    ]
    return [p.id for p in written]


def _kept(model: match_model.MatchModel | None, field: str, value: str) -> float | None:
    assert model is not None
    frequencies = model.frequencies[field]
    return frequencies.shares.get(value_key(frequencies.salt, value))


async def test_an_erasure_takes_the_persons_names_out_of_the_stored_model(store: ProfileStore) -> None:
    """Found by an audit of erasure: the model keeps the names two or more profiles share, keyed with
    a salt stored beside them, so an erased person whose duplicates shared a rare name could be found
    in it (hash a list of names with the salt) until the next estimate. A common name another person
    holds stays, counted once less for each erased profile that had it."""
    await _write(store, 60, seed=3)
    duplicates = await _rare_person(store)
    model = await match_model.estimate_model(store, min_pairs=50)
    assert _kept(model, "firstName", "zanzibar") is not None and _kept(model, "lastName", "quixotissimo") is not None
    martins = _kept(model, "lastName", "martin")
    victim = await profiles.upsert_profile(
        store, [RawIdentifier("customerId", "m-1")], {"first_name": "Olivia", "last_name": "Martin"}, source="crm"
    )
    record, _ = await merging.merge_profiles(
        store, duplicates[0], [duplicates[1]], reason="same", actor="t", policy=IdentityPolicy()
    )
    await privacy.delete_profile(store, record.survivor_id, actor="t")
    await privacy.delete_profile(store, victim.id, actor="t")

    stored = await match_model.stored_model(store)
    assert _kept(stored, "firstName", "zanzibar") is None and _kept(stored, "lastName", "quixotissimo") is None
    assert _kept(stored, "lastName", "martin") == martins  # made after the estimate: not counted in it
    assert stored is not None and model is not None and stored.version == model.version


async def test_a_model_estimated_while_a_person_is_erased_is_not_stored(
    store: ProfileStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its counts may hold the erased person's names, which their erasure took out of the model stored
    before it: storing it would bring them back."""
    await _write(store, 30, seed=5)
    duplicates = await _rare_person(store)
    paused = _PausedScoring()
    monkeypatch.setattr(match_model, "score_pair", paused)
    job = asyncio.create_task(match_model.estimate_model(store, min_pairs=10))
    assert await asyncio.to_thread(paused.started.wait, 30)
    await privacy.delete_profile(store, duplicates[0], actor="t")
    paused.resume.set()
    assert await job is None and await match_model.stored_model(store) is None


async def test_a_model_stored_while_an_erasure_commits_is_not_stored(
    store: ProfileStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by the review of 6ec6970: the estimate checked the erasures, then stored, in two steps; an
    erasure still committing between them had taken its names out of the model stored before, and
    the new one brought them back. The check and the write are now one transaction."""
    await _write(store, 30, seed=5)
    duplicates = await _rare_person(store)
    in_erasure, go_on = threading.Event(), threading.Event()  # the erasure runs on the writer's thread
    forget = match_model.forget_erased

    async def held_open(*args: Any, **kwargs: Any) -> None:
        await forget(*args, **kwargs)
        in_erasure.set()
        while not go_on.is_set():  # the erasure's transaction stays open, its names taken out
            await asyncio.sleep(0.01)

    monkeypatch.setattr(match_model, "forget_erased", held_open)
    erasure = asyncio.create_task(privacy.delete_profile(store, duplicates[0], actor="t"))
    assert await asyncio.to_thread(in_erasure.wait, 30)
    estimate = asyncio.create_task(match_model.estimate_model(store, min_pairs=10))
    await asyncio.sleep(0.5)  # the estimate reads and compares meanwhile (its reads see no erasure yet)
    go_on.set()
    await erasure
    assert await estimate is None and await match_model.stored_model(store) is None


class _CountedProcesses(ScoringProcesses):
    """The scoring processes, counting the pairs handed to them (and, with `kill_one`, one of them
    killed as soon as it started: its shares are scored in the serving process)."""

    handed: int = 0
    kill_one: bool = False

    def __init__(self, score_of: PairScorer, min_score: float, count: int) -> None:
        super().__init__(score_of, min_score, count)
        if _CountedProcesses.kill_one:
            self._processes[0][0].kill()

    def numbered(self, pairs: Any, fields: Any) -> Any:
        _CountedProcesses.handed += len(pairs)
        return super().numbered(pairs, fields)


@pytest.mark.parametrize("learned", [False, True], ids=["rules", "learned"])
@pytest.mark.parametrize("kill_one", [False, True], ids=["all-running", "one-killed"])
async def test_a_large_stores_list_scored_by_processes_is_the_list_scored_in_process(
    store: ProfileStore,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    learned: bool,
    kill_one: bool,
) -> None:
    """Past MIN_PROFILES a list's pairs are scored by processes of their own, and by the serving
    process where one stops: the same pairs, scores and links as scored in process."""
    await _write(store, 40, seed=5)
    if learned:
        model = await match_model.estimate_model(store, min_pairs=50)
        assert model is not None and model.separates()
    monkeypatch.setattr(review_list, "MIN_PROFILES", 10**9)
    here = await review_list.review_list(store, min_score=0.0, max_pairs=100_000)
    monkeypatch.setattr(review_list, "MIN_PROFILES", 0)
    monkeypatch.setattr(review_list, "ScoringProcesses", _CountedProcesses)
    monkeypatch.setattr(_CountedProcesses, "handed", 0)
    monkeypatch.setattr(_CountedProcesses, "kill_one", kill_one)
    monkeypatch.setattr(review_list, "process_count", lambda: 2)
    apart = await review_list.review_list(store, min_score=0.0, max_pairs=100_000)
    assert apart.pairs == here.pairs and len(here.pairs) > 40 and any(p.score >= 0.5 for p in here.pairs)
    assert _CountedProcesses.handed >= len(here.pairs)  # every pair went through the processes
    assert ("a scoring process stopped" in caplog.text) is kill_one
    assert not [p for p in multiprocessing.active_children() if p.name == "cdp-scoring"]  # all stopped


async def test_a_list_refused_as_too_long_stops_its_scoring_processes(
    store: ProfileStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    await _write(store, 40, seed=5)
    monkeypatch.setattr(review_list, "MIN_PROFILES", 0)
    monkeypatch.setattr(review_list, "process_count", lambda: 2)
    with pytest.raises(LimitExceeded, match="more than 10 pairs"):
        await review_list.review_list(store, min_score=0.0, max_pairs=10)
    assert not [p for p in multiprocessing.active_children() if p.name == "cdp-scoring"]
