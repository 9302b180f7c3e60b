"""Backups of the embedded store and restoring one (`python -m app backup` / `restore`): a backup is
the store as committed when it began, whatever is being written meanwhile; a restore never happens
under an open store, never loses the store it replaces, and never brings back a person erased since
the backup."""

from __future__ import annotations

import asyncio
import logging
import os
import stat
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from app.domain import clock
from app.domain.errors import Conflict, InvalidInput, StoreUnavailable, Unauthenticated
from app.domain.privacy import DEFAULT_PURPOSES as PURPOSES
from app.restoring import restore_backup
from app.services import api_keys, merging, privacy
from app.services.identity_policy import IdentityPolicy
from app.services.ingestion import EventStatus, ingest_events
from app.store.sqlite import backups, store_users
from app.store.sqlite.backups import back_up, check_backup
from app.store.sqlite.store import SQLiteStore
from tests.builders import event

EMMA, BOB, CARL = "emma@example.com", "bob@example.com", "carl@example.com"


async def _store_with(path: Path, *emails: str) -> SQLiteStore:
    store = SQLiteStore(path)
    await ingest_events(store, [event("page_view", email=email, minutes=n) for n, email in enumerate(emails)])
    return store


async def _profile_id(store: SQLiteStore, email: str) -> str | None:
    found = await store.find_profile_by_identity(f"email:{email}")
    return found.id if found else None


async def test_a_backup_is_the_store_as_committed_when_it_began(tmp_path: Path) -> None:
    store = await _store_with(tmp_path / "cdp.sqlite3", EMMA)
    copy = tmp_path / "backup.sqlite3"
    async with store.batch():  # a batch being written: BOB is in the store's open transaction
        await ingest_events(store, [event("page_view", email=BOB)])
        made = await asyncio.to_thread(back_up, store.path, copy)
    assert await _profile_id(store, BOB) is not None  # the batch committed after the backup
    await store.close()
    assert made.profiles == 1 and made.taken_at is not None
    backed_up = SQLiteStore(copy)
    try:
        assert await _profile_id(backed_up, EMMA) is not None
        assert await _profile_id(backed_up, BOB) is None
    finally:
        await backed_up.close()


async def test_a_backup_holds_nothing_of_a_person_erased_before_it(tmp_path: Path) -> None:
    store = await _store_with(tmp_path / "cdp.sqlite3", EMMA, BOB)
    emma = await _profile_id(store, EMMA)
    assert emma is not None
    await privacy.delete_profile(store, emma, actor="dpo")
    made = await asyncio.to_thread(back_up, store.path, tmp_path / "backup.sqlite3")  # the server still running
    await store.close()
    assert made.profiles == 1
    assert EMMA.encode() not in made.path.read_bytes() and emma.encode() not in made.path.read_bytes()


async def test_a_backup_never_overwrites_a_file_nor_leaves_half_of_one(tmp_path: Path) -> None:
    store = await _store_with(tmp_path / "cdp.sqlite3", EMMA)
    await store.close()
    taken = tmp_path / "taken.sqlite3"
    taken.write_text("somebody's file")
    with pytest.raises(InvalidInput, match="exists: a backup never overwrites a file"):
        back_up(store.path, taken)
    assert taken.read_text() == "somebody's file"
    assert sorted(p.name for p in tmp_path.iterdir() if "partial" in p.name) == []


async def test_restore_revokes_again_the_keys_revoked_since_the_backup(tmp_path: Path) -> None:
    database, copy = tmp_path / "cdp.sqlite3", tmp_path / "backup.sqlite3"
    store = await _store_with(database, EMMA)
    leaked, token = await api_keys.create_key(store, "leaked", ["read:profiles", "read:pii"])
    kept, kept_token = await api_keys.create_key(store, "kept", ["read:profiles"])
    back_up(database, copy)
    await api_keys.revoke_key(store, leaked.id)  # it leaked after the backup
    await store.close()

    done = await restore_backup(copy, database)

    assert done.revoked == 1
    restored = SQLiteStore(database)
    try:
        with pytest.raises(Unauthenticated, match="revoked"):
            await api_keys.authenticate(restored, token)
        assert (await api_keys.authenticate(restored, kept_token)).key_id == kept.id
    finally:
        await restored.close()


async def test_restore_withdraws_again_the_consents_withdrawn_since_the_backup(tmp_path: Path) -> None:
    """Restored as it was, the backup opted back in everyone who unsubscribed since; a grant made
    since is not carried (a backup never makes anyone consent)."""
    database, copy = tmp_path / "cdp.sqlite3", tmp_path / "backup.sqlite3"
    store = await _store_with(database, EMMA, BOB)
    emma, bob = await _profile_id(store, EMMA), await _profile_id(store, BOB)
    assert emma is not None and bob is not None
    for person in (emma, bob):
        await privacy.set_consent(store, person, "email_marketing", True, "signup", purposes=PURPOSES)
    back_up(database, copy)
    await privacy.set_consent(store, emma, "email_marketing", False, "unsubscribe link", purposes=PURPOSES)
    await privacy.set_consent(store, bob, "sms_marketing", True, "checkout", purposes=PURPOSES)
    await store.close()

    done = await restore_backup(copy, database)

    assert done.withdrawn == 1
    restored = SQLiteStore(database)
    try:
        withdrawn, kept = await restored.get_profile(emma), await restored.get_profile(bob)
        assert withdrawn is not None and kept is not None
        assert withdrawn.consents["email_marketing"].granted is False
        assert withdrawn.consents["email_marketing"].source == "unsubscribe link"
        history = await privacy.consent_history(restored, withdrawn)
        assert [(d.granted, d.source) for d in history] == [(False, "unsubscribe link"), (True, "signup")]
        assert kept.consents["email_marketing"].granted and "sms_marketing" not in kept.consents
        # Its segments are decided at the server's first round of checks, not 30 s later (a gated
        # segment listed the person meanwhile, for whoever activated its members).
        due = await restored.next_check_at()
        assert due is not None and due <= clock.now()
    finally:
        await restored.close()
    assert (await restore_backup(copy, database)).withdrawn == 1  # again, from the store it now replaces


async def _granted(store: SQLiteStore, profile_id: str, purpose: str = "email_marketing") -> bool | None:
    profile = await store.get_profile(profile_id)
    consent = profile.consents.get(purpose) if profile is not None else None
    return consent.granted if consent is not None else None


async def _signed_up(store: SQLiteStore, *emails: str) -> None:
    """Both marketing purposes granted, long ago, by the web sign-up form."""
    grants = [
        event("consent_update", email=email, properties={"purpose": purpose, "granted": True})
        for email in emails
        for purpose in ("email_marketing", "sms_marketing")
    ]
    assert {o.status for o in await ingest_events(store, grants)} == {EventStatus.ACCEPTED}


async def test_restore_withdraws_for_the_person_who_withdrew_however_and_whenever_it_was_dated(
    tmp_path: Path,
) -> None:
    """Found by a review of the first version, which carried decisions dated after the backup to the
    profile they were stored on: an unsubscribe clicked before the backup but received after it was
    lost; one made through a merged-away id went to the survivor's person; a carried event decision
    was dropped by a later unmerge; a refusal taken back since was carried all the same."""
    database, copy = tmp_path / "cdp.sqlite3", tmp_path / "backup.sqlite3"
    store = await _store_with(database, EMMA, BOB, CARL)
    emma, bob, carl = [await _profile_id(store, email) or "" for email in (EMMA, BOB, CARL)]
    await _signed_up(store, EMMA, BOB, CARL)
    back_up(database, copy)
    # Carl's unsubscribe, clicked before the backup, reaches the server after it (an offline app).
    clicked = clock.now() - timedelta(minutes=10)
    late = event("consent_update", email=CARL, at=clicked, properties={"purpose": "email_marketing", "granted": False})
    assert (await ingest_events(store, [late]))[0].status is EventStatus.ACCEPTED
    # Emma and Bob are merged since; Bob unsubscribes through his own id, Emma refuses SMS by event.
    await merging.merge_profiles(store, emma, [bob], reason="same", actor="t", policy=IdentityPolicy())
    await privacy.set_consent(store, bob, "email_marketing", False, "unsubscribe link", purposes=PURPOSES)
    sms = event("consent_update", email=EMMA, minutes=1, properties={"purpose": "sms_marketing", "granted": False})
    assert (await ingest_events(store, [sms]))[0].status is EventStatus.ACCEPTED
    # Carl refuses SMS, then grants it again: his last word is a grant, which is not carried either.
    await privacy.set_consent(store, carl, "sms_marketing", False, "app", purposes=PURPOSES)
    await privacy.set_consent(store, carl, "sms_marketing", True, "app", purposes=PURPOSES)
    await store.close()

    done = await restore_backup(copy, database)

    restored = SQLiteStore(database)
    try:
        assert await _granted(restored, carl) is False  # dated before the backup, received after
        assert await _granted(restored, bob) is False and await _granted(restored, emma) is True  # Bob's own
        # A refusal made on the merged family goes to both people the backup holds apart.
        assert await _granted(restored, emma, "sms_marketing") is False
        assert await _granted(restored, bob, "sms_marketing") is False
        assert await _granted(restored, carl, "sms_marketing") is True
        assert done.withdrawn == 4
        # Carried as made directly: merged in the backup, they would survive an unmerge there too.
        carried = [d for d in await restored.consent_history([emma, bob, carl]) if not d.granted]
        assert {d.message_id for d in carried} == {None}
    finally:
        await restored.close()


async def test_a_withdrawal_carried_into_a_merged_backup_survives_an_unmerge_there(tmp_path: Path) -> None:
    database, copy = tmp_path / "cdp.sqlite3", tmp_path / "backup.sqlite3"
    store = await _store_with(database, EMMA, BOB)
    emma, bob = [await _profile_id(store, email) or "" for email in (EMMA, BOB)]
    await _signed_up(store, EMMA)
    record, _ = await merging.merge_profiles(store, emma, [bob], reason="same", actor="t", policy=IdentityPolicy())
    back_up(database, copy)
    withdrawing = {"purpose": "email_marketing", "granted": False}
    refusal = event("consent_update", email=EMMA, minutes=2, properties=withdrawing)
    assert (await ingest_events(store, [refusal]))[0].status is EventStatus.ACCEPTED
    await store.close()

    await restore_backup(copy, database)

    restored = SQLiteStore(database)
    try:
        await merging.unmerge_profile(restored, record.id, actor="steward")
        assert await _granted(restored, emma) is False  # the event is not in the backup: nothing to replay
    finally:
        await restored.close()


async def test_restore_erases_again_the_people_erased_since_the_backup(tmp_path: Path) -> None:
    database, copy = tmp_path / "cdp.sqlite3", tmp_path / "backup.sqlite3"
    store = await _store_with(database, EMMA, BOB)
    back_up(database, copy)
    emma = await _profile_id(store, EMMA)
    assert emma is not None
    await privacy.delete_profile(store, emma, actor="dpo")
    carl = event("page_view", email=CARL)
    await ingest_events(store, [carl])  # after the backup: not restored
    await store.close()

    done = await restore_backup(copy, database)

    assert (done.carried.receipts, done.carried.erased) == (1, 1)
    assert done.kept is not None and done.kept.exists()
    assert EMMA.encode() not in database.read_bytes()  # nowhere in the file, not merely unreferenced
    restored = SQLiteStore(database)
    try:
        assert await _profile_id(restored, EMMA) is None
        assert await _profile_id(restored, BOB) is not None
        assert await _profile_id(restored, CARL) is None
        [late] = await ingest_events(restored, [event("page_view", email=EMMA, minutes=30)])
        assert late.status is EventStatus.REJECTED  # still suppressed: she never comes back
        assert sorted(e.actor for e in await restored.erasures(limit=10)) == ["dpo", "restore"]
        [again] = await ingest_events(restored, [carl])  # sent again after the restore: not a duplicate there
        assert again.status is EventStatus.ACCEPTED
    finally:
        await restored.close()
    kept = SQLiteStore(done.kept)  # the store the backup replaced, as it was
    try:
        assert await _profile_id(kept, CARL) is not None
    finally:
        await kept.close()


async def test_restore_is_refused_while_the_store_is_open_and_changes_nothing(tmp_path: Path) -> None:
    database, copy = tmp_path / "cdp.sqlite3", tmp_path / "backup.sqlite3"
    store = await _store_with(database, EMMA)
    back_up(database, copy)
    await ingest_events(store, [event("page_view", email=BOB)])
    try:
        with pytest.raises(Conflict, match="is open in another process"):
            await restore_backup(copy, database)
        assert await _profile_id(store, BOB) is not None
    finally:
        await store.close()
    assert not any(".restoring" in p.name or "before-restore" in p.name for p in tmp_path.iterdir())


async def test_a_store_opened_during_a_restore_waits_for_it(tmp_path: Path) -> None:
    database = tmp_path / "cdp.sqlite3"
    await (await _store_with(database, EMMA)).close()
    waiting = threading.Event()

    class Heard(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "is being restored: waiting" in record.getMessage():
                waiting.set()

    heard, released = Heard(), False
    logging.getLogger("cdp.store").addHandler(heard)
    try:
        with store_users.held_alone(database):
            opening = asyncio.ensure_future(asyncio.to_thread(lambda: (SQLiteStore(database), released)))
            assert await asyncio.to_thread(waiting.wait, 30)
            released = True
        store, opened_after_release = await opening
    finally:
        logging.getLogger("cdp.store").removeHandler(heard)
    await store.close()
    assert opened_after_release


async def test_a_backup_of_another_store_is_refused_once_someone_was_erased_here(tmp_path: Path) -> None:
    here, elsewhere, copy = tmp_path / "cdp.sqlite3", tmp_path / "other.sqlite3", tmp_path / "backup.sqlite3"
    for path in (here, elsewhere):  # each store keys its suppression list with its own secret
        store = await _store_with(path, EMMA, BOB)
        emma = await _profile_id(store, EMMA)
        assert emma is not None
        await privacy.delete_profile(store, emma, actor="dpo")
        await store.close()
    back_up(elsewhere, copy)
    before = here.read_bytes()
    with pytest.raises(InvalidInput, match="its erasure key differs"):
        await restore_backup(copy, here)
    assert here.read_bytes() == before
    assert not any(".restoring" in p.name or "before-restore" in p.name for p in tmp_path.iterdir())


@pytest.mark.parametrize("content", [b"not a database", b"SQLite format 3\x00" + b"\x00" * 200])
def test_a_file_that_is_not_a_whole_store_is_refused(tmp_path: Path, content: bytes) -> None:
    backup = tmp_path / "backup.sqlite3"
    backup.write_bytes(content)
    with pytest.raises(InvalidInput, match="is not a store of this server"):
        check_backup(backup)


def test_a_backup_of_a_file_that_is_not_a_store_is_a_clear_error_and_writes_nothing(tmp_path: Path) -> None:
    database = tmp_path / "cdp.sqlite3"
    database.write_text("not a database")
    with pytest.raises(StoreUnavailable, match=r"could not copy .* file is not a database"):
        back_up(database, tmp_path / "backup.sqlite3")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cdp.sqlite3"]


async def test_two_backups_to_one_name_at_once_make_one_whole_backup(tmp_path: Path) -> None:
    store = await _store_with(tmp_path / "cdp.sqlite3", EMMA)
    await store.close()
    copy = tmp_path / "backup.sqlite3"
    outcomes = await asyncio.gather(
        *(asyncio.to_thread(back_up, store.path, copy) for _ in range(2)), return_exceptions=True
    )
    assert sorted(type(o).__name__ for o in outcomes) == ["InvalidInput", "StoreFile"]
    assert check_backup(copy).profiles == 1
    assert sorted(p.name for p in tmp_path.iterdir() if "partial" in p.name) == []


@pytest.mark.parametrize("erased", ["survivor", "merged"])
async def test_restore_erases_only_the_person_erased_of_two_merged_in_the_backup(tmp_path: Path, erased: str) -> None:
    """Emma and Bob were merged by mistake when the backup was taken; the merge was undone, then one
    of them erased. The restore erases that one again, and the other stays, with their own data and
    identifiers (it erased both, as one merged profile, and suppressed both people's identifiers)."""
    database, copy = tmp_path / "cdp.sqlite3", tmp_path / "backup.sqlite3"
    store = await _store_with(database, EMMA, BOB)
    emma, bob = await _profile_id(store, EMMA), await _profile_id(store, BOB)
    assert emma is not None and bob is not None
    await ingest_events(store, [event("order_completed", email=BOB, minutes=5)])
    record, _ = await merging.merge_profiles(
        store, emma, [bob], reason="looked alike", actor="steward", policy=IdentityPolicy()
    )
    back_up(database, copy)
    await merging.unmerge_profile(store, record.id, actor="steward")
    gone, kept, gone_email, kept_email = (emma, bob, EMMA, BOB) if erased == "survivor" else (bob, emma, BOB, EMMA)
    await privacy.delete_profile(store, gone, actor="dpo")
    await store.close()

    done = await restore_backup(copy, database)

    assert done.carried.erased == 1
    assert gone_email.encode() not in database.read_bytes()
    restored = SQLiteStore(database)
    try:
        assert await _profile_id(restored, gone_email) is None
        assert await _profile_id(restored, kept_email) == kept
        profile = await restored.get_profile(kept)
        assert profile is not None and profile.merged_into is None
        assert profile.stats.orders == (1 if kept == bob else 0)  # their own history, and only theirs
        [late] = await ingest_events(restored, [event("page_view", email=kept_email, minutes=30)])
        assert (late.status, late.profile_id) == (EventStatus.ACCEPTED, kept)  # not suppressed
        [refused] = await ingest_events(restored, [event("page_view", email=gone_email, minutes=31)])
        assert refused.status is EventStatus.REJECTED
    finally:
        await restored.close()


async def test_each_restore_keeps_the_store_it_replaced_even_two_in_one_second(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The kept store's name says when, to the second: the second restore of that second copied over
    the first one's kept store (the store before both, gone)."""
    database = tmp_path / "cdp.sqlite3"
    for name, emails in (("empty.sqlite3", ()), ("bob.sqlite3", (BOB,))):
        made = await _store_with(tmp_path / f"source-{name}", *emails)
        await made.close()
        back_up(made.path, tmp_path / name)
    original = await _store_with(database, EMMA, CARL)
    await original.close()
    frozen = clock.now()
    monkeypatch.setattr(clock, "now", lambda: frozen)  # both restores in the same second

    first = await restore_backup(tmp_path / "empty.sqlite3", database)
    second = await restore_backup(tmp_path / "bob.sqlite3", database)
    assert first.kept is not None and second.kept is not None and first.kept != second.kept
    for kept, emails in ((first.kept, {EMMA, CARL}), (second.kept, set())):
        store = SQLiteStore(kept)
        try:
            assert {e for e in (EMMA, BOB, CARL) if await _profile_id(store, e)} == emails
        finally:
            await store.close()


@pytest.fixture
def usual_umask() -> Iterator[None]:
    """The umask most shells give (022): files readable by every account unless made otherwise."""
    before = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(before)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.usefixtures("usual_umask")
async def test_the_store_its_log_and_its_backups_are_readable_by_their_owner_only(tmp_path: Path) -> None:
    """Found by an audit: `python -m app` sets umask 077, but a server started another way (uvicorn with
    the factory) made the store and every backup, everyone's customer data, readable by any account."""
    database, copy = tmp_path / "cdp.sqlite3", tmp_path / "backup.sqlite3"
    store = await _store_with(database, EMMA)
    try:
        made = [database, Path(f"{database}-wal"), Path(f"{database}-shm")]
        assert [(p.name, _mode(p)) for p in made] == [(p.name, 0o600) for p in made]
        back_up(database, copy)
    finally:
        await store.close()
    assert _mode(copy) == 0o600
    database.unlink()  # a lost disk: the backup restored where no store is
    await restore_backup(copy, database)
    assert _mode(database) == 0o600
    # A store file its owner made otherwise keeps the permissions given.
    shared = tmp_path / "shared.sqlite3"
    shared.touch(mode=0o640)
    await SQLiteStore(shared).close()
    assert _mode(shared) == 0o640


async def test_a_backup_removes_the_unfinished_copies_killed_backups_left(tmp_path: Path) -> None:
    """Found by an audit: a backup killed midway left its hidden unfinished copy (and its journal), a
    copy of everyone's data outside any retention, which later backups neither removed nor mentioned."""
    store = await _store_with(tmp_path / "cdp.sqlite3", EMMA)
    await store.close()
    folder = tmp_path / "backups"
    folder.mkdir()
    gone = os.fork()
    if gone == 0:
        os._exit(0)
    os.waitpid(gone, 0)  # a process id no process has now
    host = backups._HOST
    left = [
        folder / f".monday.sqlite3.{host}-{gone}-1.partial",
        folder / f".monday.sqlite3.{host}-{gone}-1.partial-journal",
    ]
    running = folder / f".tuesday.sqlite3.{host}-{os.getpid()}-1.partial"  # a backup still being taken
    elsewhere = folder / f".tuesday.sqlite3.another_host-{gone}-1.partial"  # a process this one cannot see
    for path in (*left, running, elsewhere):
        path.write_bytes(b"emma@example.com")
    back_up(tmp_path / "cdp.sqlite3", folder / "wednesday.sqlite3")
    assert sorted(p.name for p in folder.iterdir()) == sorted([elsewhere.name, running.name, "wednesday.sqlite3"])
