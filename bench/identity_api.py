"""Matching quality through the API: each record written with `upsertProfile` to a fresh embedded
store served in process (the real app, over httpx's ASGI transport), then `mergeCandidates(profileId)`
asked for every profile, as a steward's tool would.

Every record carries its own `recordId` identifier (a custom type) besides its emails and phones, so
records sharing an email or a phone are merged on the spot by deterministic resolution, as in
production. Quality is judged on the pairs of profiles the store then holds, each profile standing for
the person most of its records belong to: what `mergeCandidates` can be right or wrong about.
Beside it, the whole resolution is judged on record pairs, as the ECM anchor is: two records are
resolved as one person when they ended on one profile, or on two profiles listed as candidates.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from app.bootstrap import Services
from app.domain.access import Scope
from app.domain.errors import InvalidInput
from app.domain.identifiers import normalise
from app.domain.matching import DEFAULT_MIN_SCORE, blocking_keys, match_fields
from app.domain.profile import Profile
from app.main import create_app
from app.services import match_model
from app.services.api_keys import create_key
from app.services.ingestion import IngestionPolicy
from app.settings import Settings
from app.store.sqlite.store import SQLiteStore
from bench.identity_ceiling import Compared, ceiling, compared_pairs
from bench.identity_store import Quality, true_pairs

RECORD_TYPE = "recordId"
WRITERS = 8
UPSERT = "mutation($input: ProfileInput!) { upsertProfile(input: $input) { id } }"
OWNER = "query($type: String!, $value: String!) { profileByIdentifier(type: $type, value: $value) { id } }"
CANDIDATES = (
    "query($id: ID!, $min: Float) { mergeCandidates(profileId: $id, minScore: $min, first: 1000) { b { id } } }"
)


@dataclass(frozen=True, slots=True)
class ApiRun:
    quality: Quality
    load_seconds: float
    ask_seconds: float
    profiles: int  # after deterministic merges
    mixed: int  # profiles holding records of two people or more (a shared family email or landline)
    unkeyed: int  # true pairs of records sharing no blocking key
    scorer: str  # which scorer answered: the model estimated from the loaded store's pairs, or the rules
    # Wrong pairs whose two profiles both hold records of one person: a profile holding two people's
    # records (a family mailbox or landline) stands for the one most of them belong to, so a pair that
    # is right about the other person counts as wrong; no scorer can avoid these.
    wrong_shared: int
    # The whole resolution judged on record pairs: deterministic merges and the candidates listed
    records: Quality
    # The most any scorer reading our comparisons could list at the target's precision, knowing the
    # answers (`identity_ceiling`): what the data allow on these profile pairs
    ceiling: Quality
    compared: Compared  # the store's key-sharing profile pairs as a scorer reads them, with the answers


def upsert_input(profile: Profile) -> dict[str, Any]:
    """The upsertProfile input a connector would send for this record."""
    identifiers = [{"type": RECORD_TYPE, "value": profile.id}]
    for found in profile.identifiers:
        try:  # a typo can make a number invalid: the server would refuse the record, a connector drops it
            normalise(found.type, found.value)
        except InvalidInput:
            continue
        identifiers.append({"type": found.type, "value": found.value})
    fields: dict[str, Any] = {"identifiers": identifiers}
    if profile.first_name:
        fields["firstName"] = profile.first_name
    if profile.last_name:
        fields["lastName"] = profile.last_name
    if profile.birth_date:
        fields["birthDate"] = profile.birth_date.isoformat()
    if profile.addresses:
        fields["addresses"] = [a.model_dump(by_alias=True, exclude_none=True) for a in profile.addresses]
    return fields


async def through_the_api(
    profiles: Sequence[Profile],
    truth: dict[str, str],
    directory: Path,
    *,
    min_precision: float,
    min_score: float = DEFAULT_MIN_SCORE,
) -> ApiRun:
    async with _served(directory) as (store, client):
        began = time.perf_counter()
        await _upsert_all(client, profiles)
        model = await match_model.estimate_model(store)  # what the server's job does, on demand
        loaded = time.perf_counter()
        owner = await _owners(client, [p.id for p in profiles])
        found: set[frozenset[str]] = set()
        for profile_id in set(owner.values()):
            body = await _call(client, CANDIDATES, {"id": profile_id, "min": min_score})
            found |= {frozenset((profile_id, c["b"]["id"])) for c in body["mergeCandidates"]}
        asked = time.perf_counter()
        person = _people_of(owner, truth)
        compared = compared_pairs(await store.get_profiles(list(person)), person)
    expected = true_pairs(person)
    quality = Quality(len(expected), len(found), len(found & expected))
    mixed = sum(1 for profile_id in person if len({truth[r] for r, p in owner.items() if p == profile_id}) > 1)
    scorer = model.name if model is not None and model.separates() else "rules"
    same_person = true_pairs(truth)  # record pairs
    unkeyed = unkeyed_pairs(profiles, same_person)
    held: dict[str, set[str]] = defaultdict(set)
    for record, profile_id in owner.items():
        held[profile_id].add(truth[record])
    shared = sum(1 for pair in found - expected if set.intersection(*(held[p] for p in pair)))
    resolved = resolved_pairs(owner, found)
    records = Quality(len(same_person), len(resolved), len(resolved & same_person))
    best = ceiling(compared, min_precision)
    return ApiRun(
        quality, loaded - began, asked - loaded, len(person), mixed, unkeyed, scorer, shared, records, best, compared
    )


async def compared_through_the_api(profiles: Sequence[Profile], truth: dict[str, str], directory: Path) -> Compared:
    """The profile pairs a store holds once `profiles` are written through the API (deterministic
    resolution merging those sharing an email or a phone), compared as `identity_ceiling` does: what a
    supervised learner trains on (`identity_supervised`)."""
    async with _served(directory) as (store, client):
        await _upsert_all(client, profiles)
        person = _people_of(await _owners(client, [p.id for p in profiles]), truth)
        return compared_pairs(await store.get_profiles(list(person)), person)


@asynccontextmanager
async def _served(directory: Path) -> AsyncIterator[tuple[SQLiteStore, httpx.AsyncClient]]:
    """A fresh embedded store served by the real app in process, and a client holding a key of every scope."""
    store = SQLiteStore(directory / "api.sqlite3")
    try:
        services = Services(settings=Settings(seed_fixtures=False), store=store, ingestion=IngestionPolicy())
        _, token = await create_key(store, "bench", list(Scope))
        transport = httpx.ASGITransport(app=create_app(services=services))
        headers = {"authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(transport=transport, base_url="http://bench", headers=headers) as client:
            yield store, client
    finally:
        await store.close()


def _people_of(owner: dict[str, str], truth: dict[str, str]) -> dict[str, str]:
    """Profile id -> the person most of its records belong to (records sharing an email or a phone
    are on one profile: a family mailbox or a landline can put two people there)."""
    votes: dict[str, Counter[str]] = defaultdict(Counter)
    for record, profile_id in owner.items():
        votes[profile_id][truth[record]] += 1
    return {profile_id: min(c, key=lambda p: (-c[p], p)) for profile_id, c in votes.items()}


def resolved_pairs(owner: dict[str, str], listed: set[frozenset[str]]) -> set[frozenset[str]]:
    """The record pairs resolved as one person: on one profile (a deterministic merge), or on two
    profiles `mergeCandidates` listed together."""
    held: dict[str, list[str]] = defaultdict(list)
    for record, profile_id in owner.items():
        held[profile_id].append(record)
    together = {frozenset((a, b)) for records in held.values() for i, a in enumerate(records) for b in records[i + 1 :]}
    for pair in listed:
        first, second = sorted(pair)
        together |= {frozenset((a, b)) for a in held[first] for b in held[second]}
    return together


def unkeyed_pairs(profiles: Sequence[Profile], expected: set[frozenset[str]]) -> int:
    """True pairs whose two records share no blocking key: no threshold can find them but a link."""
    keys = {p.id: blocking_keys(match_fields(p)) for p in profiles}
    return sum(1 for pair in expected if not set.intersection(*(set(keys[i]) for i in pair)))


async def _upsert_all(client: httpx.AsyncClient, profiles: Sequence[Profile]) -> None:
    """Several writers at once, as connectors write: records of one person may race to create it,
    which deterministic resolution settles as in production."""
    queue = iter(profiles)

    async def writer() -> None:
        for profile in queue:
            await _call(client, UPSERT, {"input": upsert_input(profile)})

    await asyncio.gather(*(writer() for _ in range(WRITERS)))


async def _owners(client: httpx.AsyncClient, records: Sequence[str]) -> dict[str, str]:
    """Record id -> the profile it ended on (after every merge), read back by its identifier."""
    owner: dict[str, str] = {}
    queue = iter(records)

    async def reader() -> None:
        for record in queue:
            body = await _call(client, OWNER, {"type": RECORD_TYPE, "value": record})
            owner[record] = body["profileByIdentifier"]["id"]

    await asyncio.gather(*(reader() for _ in range(WRITERS)))
    return owner


async def _call(client: httpx.AsyncClient, query: str, variables: dict[str, Any]) -> dict[str, Any]:
    response = await client.post("/graphql", json={"query": query, "variables": variables})
    body: dict[str, Any] = response.json()
    if body.get("errors"):
        raise RuntimeError(f"{query.split('(')[0]} failed: {body['errors'][0]}")
    data: dict[str, Any] = body["data"]
    return data
