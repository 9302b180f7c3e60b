"""A family's shared mailbox or landline at ingestion, on every storage backend: a write stating
another person's given name and birth date than the profile an identifier of it names neither joins
nor merges that profile (its data would be shown, exported and erased as the other person's)."""

from __future__ import annotations

from typing import Any

from app.domain.events import RawIdentifier
from app.domain.merge_protection import MergeProtection
from app.domain.profile import Profile
from app.domain.profile_query import InteractionFilter
from app.services import merging, profile_reads, profiles
from app.services.identity_policy import IdentityPolicy
from app.services.ingestion import EventStatus, IngestionPolicy, ingest_events
from app.services.ports import ProfileStore
from app.services.profile_writes import ANOTHER_PERSON
from tests.builders import event

FAMILY = ("email", "martin.family@example.com")
ANNA = {"first_name": "Anna", "last_name": "Martin", "birth_date": "1980-03-12"}
MAX = {"first_name": "Max", "last_name": "Martin", "birth_date": "1978-10-01"}


async def _upsert(store: ProfileStore, ids: list[tuple[str, str]], fields: dict[str, Any], **kw: Any) -> Profile:
    return await profiles.upsert_profile(store, [RawIdentifier(t, v) for t, v in ids], fields, **kw)


def _held(profile: Profile | None) -> set[tuple[str, str]]:
    assert profile is not None
    return {(r.type, r.value) for r in profile.identifiers}


async def test_another_persons_upsert_through_a_family_mailbox_gets_a_profile_of_its_own(store: ProfileStore) -> None:
    anna = await _upsert(store, [FAMILY, ("email", "anna@example.com")], ANNA)
    max_ = await _upsert(store, [FAMILY, ("email", "max@example.com")], MAX)
    assert max_.id != anna.id
    assert (max_.first_name, _held(max_)) == ("Max", {("email", "max@example.com")})  # not the family's
    after = await store.get_profile(anna.id)
    assert after is not None and (after.first_name, after.birth_date.isoformat()) == ("Anna", "1980-03-12")  # type: ignore[union-attr]
    assert _held(after) == {FAMILY, ("email", "anna@example.com")}
    owner = await profile_reads.get_profile_by_identifier(store, *FAMILY)
    assert owner is not None and owner.id == anna.id
    [refusal] = await merging.merge_refusals(store, anna.id)
    assert refusal.reason == ANOTHER_PERSON and refusal.profile_ids == sorted([anna.id, max_.id])
    # Their next writes go to each one's own profile, and the refusal is recorded once.
    again = await _upsert(store, [FAMILY, ("email", "max@example.com")], MAX | {"job_title": "pilot"})
    assert again.id == max_.id and again.job_title == "pilot"
    assert [r.id for r in await merging.merge_refusals(store, max_.id)] == [refusal.id]
    assert await store.count_profiles() == 2


async def test_the_other_persons_next_writes_through_the_family_mailbox_go_to_their_own_profile(
    store: ProfileStore,
) -> None:
    """Before, Max's write naming only the family's email went onto Anna's profile (Max's name, birth
    date and job over hers), and one naming a new CRM record too made him a profile each time."""
    anna = await _upsert(store, [FAMILY, ("email", "anna@example.com")], ANNA)
    max_ = await _upsert(store, [FAMILY, ("crmId", "c1")], MAX)
    assert max_.id != anna.id
    only_mailbox = await _upsert(store, [FAMILY], MAX | {"job_title": "pilot"})
    assert only_mailbox.id == max_.id and only_mailbox.job_title == "pilot"
    another_record = await _upsert(store, [FAMILY, ("crmId", "c2")], {"first_name": "Max", "last_name": "Martin"})
    assert another_record.id == max_.id
    assert _held(another_record) == {("crmId", "c1"), ("crmId", "c2")}  # the family's email stays Anna's
    after = await store.get_profile(anna.id)
    assert after is not None and (after.first_name, after.job_title) == ("Anna", None)
    assert _held(after) == {FAMILY, ("email", "anna@example.com")}
    assert [r.profile_ids for r in await merging.merge_refusals(store, anna.id)] == [sorted([anna.id, max_.id])]
    assert await store.count_profiles() == 2


async def test_of_the_profiles_kept_apart_a_write_goes_to_its_own_persons(store: ProfileStore) -> None:
    """Max's and his twin Sophie's (Anna's birth date) were each kept off Anna's. One of someone the
    family's mailbox never wrote for goes where its identifiers say, as before: a profile of its own
    would split as readily a customer whose name a CRM corrected (the old name written again)."""
    anna = await _upsert(store, [FAMILY], ANNA)
    max_ = await _upsert(store, [FAMILY, ("crmId", "c1")], MAX)
    sophie_says = ANNA | {"first_name": "Sophie"}
    sophie = await _upsert(store, [FAMILY, ("crmId", "c2")], sophie_says)
    assert len({anna.id, max_.id, sophie.id}) == 3
    assert (await _upsert(store, [FAMILY], sophie_says | {"job_title": "nurse"})).id == sophie.id
    assert (await _upsert(store, [FAMILY], MAX | {"job_title": "pilot"})).id == max_.id
    says = {"firstName": "Sophie", "lastName": "Martin", "birthDate": ANNA["birth_date"]}
    [identify] = await ingest_events(store, [event("identify", identifiers=[FAMILY], properties=says)])
    assert identify.status is EventStatus.ACCEPTED and identify.profile_id == sophie.id
    stranger = await _upsert(store, [FAMILY], {"first_name": "Paul", "birth_date": "1990-01-01"})
    assert stranger.id == anna.id
    assert await store.count_profiles() == 3


async def test_a_twins_upsert_through_the_family_mailbox_gets_a_profile_of_its_own(store: ProfileStore) -> None:
    """Twins share a birth date: given names far apart (Anna/Lena would not be) tell them apart."""
    anna = await _upsert(store, [FAMILY, ("email", "anna@example.com")], ANNA)
    twin = await _upsert(store, [FAMILY, ("email", "sophie@example.com")], ANNA | {"first_name": "Sophie"})
    assert twin.id != anna.id and _held(twin) == {("email", "sophie@example.com")}
    assert _held(await store.get_profile(anna.id)) == {FAMILY, ("email", "anna@example.com")}
    assert [r.reason for r in await merging.merge_refusals(store, anna.id)] == [ANOTHER_PERSON]
    again = await _upsert(store, [FAMILY, ("email", "sophie@example.com")], ANNA | {"first_name": "Sophie"})
    assert again.id == twin.id and await store.count_profiles() == 2


async def test_a_twins_upsert_under_another_initial_gets_a_profile_of_its_own(store: ProfileStore) -> None:
    """A till receipt's "M. Martin" through the family's mailbox, beside Anna on one birth date: no
    form of Anna's given name starts with M. Before, the record and its phone landed on Anna's
    profile."""
    anna = await _upsert(store, [FAMILY, ("email", "anna@example.com")], ANNA)
    twin = await _upsert(store, [FAMILY, ("phone", "+33612345678")], ANNA | {"first_name": "M."})
    assert twin.id != anna.id and _held(twin) == {("phone", "+33612345678")}
    after = await store.get_profile(anna.id)
    assert after is not None and after.first_name == "Anna"
    assert _held(after) == {FAMILY, ("email", "anna@example.com")}
    assert [r.reason for r in await merging.merge_refusals(store, anna.id)] == [ANOTHER_PERSON]
    # Her own initial is hers: it joins her profile, which keeps her full name.
    own = await _upsert(store, [FAMILY], ANNA | {"first_name": "A."})
    assert own.id == anna.id and own.first_name == "Anna" and await store.count_profiles() == 2


async def test_a_namesake_of_another_surname_and_birth_date_gets_a_profile_of_its_own(store: ProfileStore) -> None:
    """Two Amelias on one mailbox (amelia1982@...): the same given name, but another surname beside
    another birth date. Her own married name on her birth date still joins her profile."""
    mailbox = ("email", "amelia1982@example.com")
    amelia = {"first_name": "Amelia", "last_name": "Shelnridge", "birth_date": "1982-11-14"}
    first = await _upsert(store, [mailbox, ("phone", "+447935069617")], amelia)
    other = await _upsert(
        store, [mailbox, ("phone", "+447827431446")], amelia | {"last_name": "Fairbwood", "birth_date": "1982-11-30"}
    )
    assert other.id != first.id and _held(other) == {("phone", "+447827431446")}
    assert _held(await store.get_profile(first.id)) == {mailbox, ("phone", "+447935069617")}
    assert [r.reason for r in await merging.merge_refusals(store, first.id)] == [ANOTHER_PERSON]
    married = await _upsert(store, [mailbox], amelia | {"last_name": "Fairbwood"})
    assert married.id == first.id and await store.count_profiles() == 2


async def _namesakes(store: ProfileStore, given_name: str, count: int) -> None:
    """`count` other people of this given name in the store (under other surnames)."""
    for n in range(count):
        await _upsert(
            store, [("email", f"{given_name}{n}@example.org")], {"first_name": given_name, "last_name": f"X{n}"}
        )


async def test_twins_of_near_given_names_both_common_in_the_store_get_profiles_of_their_own(
    store: ProfileStore,
) -> None:
    """Anna and Lena on one birth date are near as Jaro-Winkler reads them (0.67): one person's
    typo (test_a_twins_upsert_through_the_family_mailbox_gets_a_profile_of_its_own), unless the
    store holds both as names people have. With five Lenas and five Annas, Lena's upsert and her
    identify event through the family's mailbox land apart; a mistyped "Anan" still joins Anna."""
    anna = await _upsert(store, [FAMILY, ("email", "anna@example.com")], ANNA)
    await _namesakes(store, "Lena", 5)
    await _namesakes(store, "Anna", 4)
    lena = await _upsert(store, [FAMILY, ("email", "lena@example.com")], ANNA | {"first_name": "Lena"})
    assert lena.id != anna.id and _held(lena) == {("email", "lena@example.com")}
    assert [r.reason for r in await merging.merge_refusals(store, anna.id)] == [ANOTHER_PERSON]
    says = {"firstName": "Lena", "lastName": "Martin", "birthDate": ANNA["birth_date"]}
    [landed] = await ingest_events(
        store, [event("identify", identifiers=[FAMILY, ("phone", "+33612345678")], properties=says)]
    )
    assert landed.status is EventStatus.ACCEPTED and landed.profile_id not in (anna.id, None)
    typo = await _upsert(store, [FAMILY], ANNA | {"first_name": "Anan"})
    assert typo.id == anna.id


async def test_sisters_of_given_names_one_letter_apart_both_common_get_profiles_of_their_own(
    store: ProfileStore,
) -> None:
    """Maria and Marta are one letter apart, which reads as a typo: with five Marias and five Martas
    in the store, they are two names, so Maria's twin writing through the family's mailbox gets a
    profile of their own, and so does an older sister (a birth date mistyped, read with a typo);
    "Mrata", a typo no other profile holds, still joins Maria."""
    maria = {"first_name": "Maria", "last_name": "Zuzera", "birth_date": "1966-10-16"}
    family = await _upsert(store, [FAMILY, ("email", "maria@example.com")], maria)
    await _namesakes(store, "Marta", 5)
    await _namesakes(store, "Maria", 4)
    twin = await _upsert(store, [FAMILY, ("email", "marta@example.com")], maria | {"first_name": "Marta"})
    assert twin.id != family.id and _held(twin) == {("email", "marta@example.com")}
    other_family = ("phone", "+34961234567")  # a landline, and the older sister's only write
    await _upsert(store, [other_family], maria | {"first_name": "Marta", "last_name": "Nalero"})
    older = maria | {"last_name": "Nalero", "birth_date": "1961-02-07"}
    sister = await _upsert(store, [other_family, ("email", "maria61@example.com")], older)
    assert _held(sister) == {("email", "maria61@example.com")}
    typo = await _upsert(store, [FAMILY], maria | {"first_name": "Mrata"})
    assert typo.id == family.id


async def test_a_family_mailbox_does_not_merge_two_peoples_profiles(store: ProfileStore) -> None:
    """Before, one write naming the family's email and Max's own merged Max's profile into Anna's."""
    anna = await _upsert(store, [FAMILY], ANNA)
    max_ = await _upsert(store, [("phone", "+33612345678")], MAX)
    written = await _upsert(store, [FAMILY, ("phone", "+33612345678")], MAX)
    assert written.id == max_.id and _held(written) == {("phone", "+33612345678")}
    assert await merging.merge_history(store, anna.id) == [] and await merging.merge_history(store, max_.id) == []
    assert await store.count_profiles() == 2


async def test_one_persons_records_still_join_through_their_mailbox(store: ProfileStore) -> None:
    """A typo in the given name, a nickname, a birth date left out or mistyped: the same person."""
    anna = await _upsert(store, [FAMILY, ("crmId", "1")], ANNA)
    same = [
        ({"first_name": "Anan"} | {k: v for k, v in ANNA.items() if k != "first_name"}, "2"),
        ({"first_name": "Anna", "birth_date": "1980-12-03"}, "3"),  # day and month swapped
        ({"first_name": "Anna", "birth_date": "1975-01-01"}, "4"),  # another birth date, the same name
        ({"first_name": "Annie"}, "5"),  # no birth date, a given name near enough
        ({"last_name": "Martin"}, "6"),  # no given name: nothing to tell
    ]
    for fields, crm_id in same:
        written = await _upsert(store, [FAMILY, ("crmId", crm_id)], fields)
        assert written.id == anna.id, fields
    assert await merging.merge_refusals(store, anna.id) == []


async def test_a_customer_id_or_a_write_with_nothing_of_its_own_goes_where_its_identifiers_say(
    store: ProfileStore,
) -> None:
    """A CRM correcting a customer's name and birth date names the customerId: the customer's own.
    A write naming only the family's email could only make a profile nothing finds again."""
    anna = await _upsert(store, [FAMILY, ("customerId", "C1")], ANNA)
    corrected = await _upsert(store, [("customerId", "C1"), FAMILY], MAX)
    assert corrected.id == anna.id and corrected.first_name == "Max"
    back = await _upsert(store, [FAMILY], ANNA)
    assert back.id == anna.id and back.first_name == "Anna"
    assert await merging.merge_refusals(store, anna.id) == []
    assert await store.count_profiles() == 1


async def test_with_households_apart_off_a_shared_mailbox_joins_as_before(store: ProfileStore) -> None:
    joined = IdentityPolicy(protection=MergeProtection(households_apart=False))
    anna = await _upsert(store, [FAMILY], ANNA, policy=joined)
    max_ = await _upsert(store, [FAMILY, ("email", "max@example.com")], MAX, policy=joined)
    assert max_.id == anna.id and max_.first_name == "Max"
    assert await store.count_profiles() == 1


async def test_an_identify_event_of_another_person_lands_on_their_own_profile_without_the_shared_email(
    store: ProfileStore,
) -> None:
    """On the batch path (a run of events applied in memory) and on the per-event path alike."""
    anna = await _upsert(store, [FAMILY], ANNA)
    max_ids = [FAMILY, ("email", "max@example.com")]
    says = {"firstName": "Max", "lastName": "Martin", "birthDate": "1978-10-01"}
    batch = [
        event("page_view", identifiers=[FAMILY], message_id="anna-1"),
        event("identify", identifiers=max_ids, properties=says, message_id="max-1", minutes=1),
        event("order_completed", identifiers=[("email", "max@example.com")], message_id="max-2", minutes=2),
    ]
    outcomes = await ingest_events(store, batch)
    assert [o.status for o in outcomes] == [EventStatus.ACCEPTED] * 3
    assert outcomes[0].profile_id == anna.id
    assert outcomes[1].profile_id == outcomes[2].profile_id != anna.id
    max_ = await store.get_profile(outcomes[1].profile_id or "")
    assert max_ is not None and max_.first_name == "Max" and _held(max_) == {("email", "max@example.com")}
    items = await store.list_interactions(max_.id, before=None, where=InteractionFilter(), limit=10)
    assert {i.message_id for i in items} == {"max-1", "max-2"}
    assert all("email:martin.family@example.com" not in i.identifiers for i in items)  # Anna's: not kept
    [alone] = await ingest_events(store, [event("identify", identifiers=max_ids, properties=says, minutes=3)])
    assert alone.profile_id == max_.id
    assert (await store.get_profile(anna.id)).stats.orders == 0  # type: ignore[union-attr]
    assert [r.reason for r in await merging.merge_refusals(store, anna.id)] == [ANOTHER_PERSON]


async def test_identify_events_without_a_given_name_or_on_a_mistyped_twins_date_land_apart(
    store: ProfileStore,
) -> None:
    """On the batch path as on an upsert: a grandmother's surname and birth date through the family's
    mailbox, and Anna's twin Max writing a birth date one digit off Anna's (maybe the same date)."""
    anna = await _upsert(store, [FAMILY], ANNA)
    grandmother = {"lastName": "Martin", "birthDate": "1951-06-30"}
    twin = {"firstName": "Max", "lastName": "Martin", "birthDate": "1980-03-13"}
    batch = [
        event("identify", identifiers=[FAMILY, ("email", "gm@example.com")], properties=grandmother),
        event("identify", identifiers=[FAMILY, ("email", "max@example.com")], properties=twin, minutes=1),
        event("identify", identifiers=[FAMILY], properties={"firstName": "Anna"}, minutes=2),
    ]
    outcomes = await ingest_events(store, batch)
    assert [o.status for o in outcomes] == [EventStatus.ACCEPTED] * 3
    assert len({anna.id, outcomes[0].profile_id, outcomes[1].profile_id}) == 3
    assert outcomes[2].profile_id == anna.id and _held(await store.get_profile(anna.id)) == {FAMILY}
    for outcome, own in zip(outcomes[:2], ("gm@example.com", "max@example.com"), strict=True):
        assert _held(await store.get_profile(outcome.profile_id or "")) == {("email", own)}


async def test_a_twins_identify_event_lands_on_her_own_profile(store: ProfileStore) -> None:
    """The batch path reads a twin as the upsert does: one birth date, given names far apart."""
    anna = await _upsert(store, [FAMILY], ANNA)
    says = {"firstName": "Sophie", "lastName": "Martin", "birthDate": ANNA["birth_date"]}
    twin_ids = [FAMILY, ("email", "sophie@example.com")]
    outcomes = await ingest_events(
        store,
        [
            event("identify", identifiers=twin_ids, properties=says, message_id="sophie-1"),
            event("page_view", identifiers=[FAMILY], message_id="anna-1", minutes=1),
        ],
    )
    assert outcomes[0].profile_id not in (None, anna.id) and outcomes[1].profile_id == anna.id
    twin = await store.get_profile(outcomes[0].profile_id or "")
    assert twin is not None and _held(twin) == {("email", "sophie@example.com")}
    assert [r.reason for r in await merging.merge_refusals(store, anna.id)] == [ANOTHER_PERSON]


async def test_an_identify_event_of_another_person_stays_apart_with_automatic_merges_off(store: ProfileStore) -> None:
    policy = IngestionPolicy(identity=IdentityPolicy(protection=MergeProtection(automatic_merges=False)))
    anna = await _upsert(store, [FAMILY], ANNA)
    says = {"firstName": "Max", "birthDate": "1978-10-01"}
    [outcome] = await ingest_events(
        store, [event("identify", identifiers=[FAMILY, ("deviceId", "d-max")], properties=says)], policy
    )
    assert outcome.status is EventStatus.ACCEPTED and outcome.profile_id != anna.id


async def test_a_profile_a_steward_merged_takes_the_writes_of_each_person_merged(store: ProfileStore) -> None:
    """The steward decided Anna's and Max's profiles are one person; an automatic merge decides nothing."""
    anna = await _upsert(store, [FAMILY], ANNA)
    max_ = await _upsert(store, [("email", "max@example.com")], MAX)
    await merging.merge_profiles(
        store, anna.id, [max_.id], reason="one person", actor="steward", policy=IdentityPolicy()
    )
    written = await _upsert(store, [FAMILY, ("phone", "+33612345678")], MAX)
    assert written.id == anna.id and ("phone", "+33612345678") in _held(written)


async def test_a_write_naming_no_one_does_not_merge_two_peoples_profiles(store: ProfileStore) -> None:
    """Before, a write stating a surname alone through Anna's mailbox and Max's phone merged them."""
    anna = await _upsert(store, [FAMILY], ANNA)
    max_ = await _upsert(store, [("phone", "+33612345678")], MAX)
    written = await _upsert(store, [FAMILY, ("phone", "+33612345678")], {"last_name": "Martin"})
    assert written.id == anna.id  # the stronger identifier's profile, as before: nothing tells otherwise
    assert await merging.merge_history(store, anna.id) == [] and await merging.merge_history(store, max_.id) == []
    assert _held(await store.get_profile(max_.id)) == {("phone", "+33612345678")}
    [refusal] = await merging.merge_refusals(store, max_.id)
    assert refusal.reason == ANOTHER_PERSON and refusal.profile_ids == [anna.id, max_.id]
    assert await store.count_profiles() == 2


async def test_a_write_naming_no_one_goes_to_the_profile_its_surname_and_birth_date_agree_with(
    store: ProfileStore,
) -> None:
    """Max's birth date, through the family's mailbox (the stronger identifier) and his phone."""
    anna = await _upsert(store, [FAMILY], ANNA)
    max_ = await _upsert(store, [("phone", "+33612345678")], MAX)
    says = {"last_name": "Martin", "birth_date": MAX["birth_date"], "job_title": "pilot"}
    written = await _upsert(store, [FAMILY, ("phone", "+33612345678")], says)
    assert written.id == max_.id and written.job_title == "pilot" and _held(written) == {("phone", "+33612345678")}
    held = await store.get_profile(anna.id)
    assert held is not None and held.job_title is None and _held(held) == {FAMILY}
    assert await merging.merge_history(store, anna.id) == [] and await store.count_profiles() == 2


async def test_a_write_without_a_given_name_stating_another_birth_date_stays_apart(store: ProfileStore) -> None:
    anna = await _upsert(store, [FAMILY], ANNA)
    # A grandmother (the family's surname) and a neighbour (another) signing up with the family's email.
    for says, own in (
        ({"last_name": "Martin", "birth_date": "1951-06-30"}, "martin@example.com"),
        ({"last_name": "Dupont", "birth_date": "1949-02-11"}, "dupont@example.com"),
    ):
        written = await _upsert(store, [FAMILY, ("email", own)], says)
        assert written.id != anna.id and _held(written) == {("email", own)}, says
    assert _held(await store.get_profile(anna.id)) == {FAMILY}
    assert [r.reason for r in await merging.merge_refusals(store, anna.id)] == [ANOTHER_PERSON] * 2  # one each
    # Anna's birth date mistyped (one digit), or another surname without a birth date: nothing to tell.
    for fields, own in (({"last_name": "Martin", "birth_date": "1980-03-13"}, "1"), ({"last_name": "Dupont"}, "2")):
        joined = await _upsert(store, [FAMILY, ("crmId", own)], fields)
        assert joined.id == anna.id, fields


async def test_an_identify_event_naming_no_one_does_not_merge_two_peoples_profiles(store: ProfileStore) -> None:
    anna = await _upsert(store, [FAMILY], ANNA)
    max_ = await _upsert(store, [("phone", "+33612345678")], MAX)
    says = {"lastName": "Martin", "birthDate": MAX["birth_date"]}
    [outcome] = await ingest_events(
        store, [event("identify", identifiers=[FAMILY, ("phone", "+33612345678")], properties=says)], IngestionPolicy()
    )
    assert outcome.status is EventStatus.ACCEPTED and outcome.profile_id == max_.id
    assert await merging.merge_history(store, anna.id) == [] and await store.count_profiles() == 2
