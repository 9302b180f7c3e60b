"""Blocking keys: the few short strings under which a profile is indexed so that its likely
duplicates are found by "profiles sharing any of these keys" instead of by comparing all pairs.

The keys are independent: each leaves out at least one field, so that a typo, a replaced value or a
missing value in any one field (given name, surname, birth date, address, email, phone) still leaves
two records of one person a shared key (a property test checks it), and most pairs with two errors
too. Each is narrow enough that few unrelated people share it. Keys are prefixed by their kind:

- `n:` Metaphone of the surname + first letter of the given name (and again with the first part of
  a compound surname: "Garcia Lopez" meets "Garcia"): survives a given-name typo or nickname;
- `g:` the given name as written + the surname's first letter: survives a surname typo that changes
  its Metaphone;
- `s:` the Metaphones of both names in sorted order: the same key whichever field holds which, so
  swapped first/last names meet; held by two profiles only, it says no other profile's names sound
  like theirs (`names_key`, `scoring.UNIQUE_NAMES_BITS`);
- `y:` Metaphone of the given name + birth year: survives a surname typo or a married name together
  with a typo in the birth date (a profile's lookup leaves it out, and `g:`, where the birth date
  key and the surname's keys survive any one error: `lookup_keys`);
- `t:` Metaphone of the surname + birth year: survives another given name (a replaced or missing one);
- `b:` birth date with day and month in ascending order (so a day/month swap gives the same key):
  survives both names written otherwise;
- `e:` email local part without dots, separators or +tag: the same mailbox at any provider;
- `p:` the phone's last 8 digits: the subscriber number whatever country code was typed;
- `a:` postcode + house number; `q:` postcode + surname initial (one record without a number);
  `r:` house number + the street's name (its first word that is not a street type): survives a
  postcode typo.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence

from app.domain.matching.fields import MatchAddress, MatchFields, phonetic
from app.domain.matching.scoring import GENERIC_LOCAL_PARTS, surnames_differ

MAX_BLOCKING_KEYS = 20
NAMES_KEY = "s:"  # the prefix of the key of both names' sounds
GIVEN_NAME_KEY = "g:"  # the prefix of the given name + surname initial key
GIVEN_NAME_YEAR_KEY = "y:"  # the prefix of the given name's sound + birth year key
# A key shared by more than this many profiles (a common surname's code, a default birth date typed by
# a shop) is not compared pair by pair: one profile's candidates pass it over, and the whole store's
# pairs (the review list, the model's estimation) compare each of its profiles with its sorted
# neighbours only (`block_pairs`): the cost stays bounded whatever the data.
MAX_BLOCK_SIZE = 300
# Sorted neighbourhood inside a long block: each profile is compared with the next ones in two orders.
NEIGHBOURHOOD_WINDOW = 10
_PHONETIC_LENGTH = 5
_STREET_NAME_LENGTH = 6
_MAX_EMAILS = 3
_MAX_PHONES = 2
_MAX_ADDRESSES = 2
_MIN_LOCAL_PART = 3
# Words that say what kind of street it is, or join its name: never the name that tells streets apart.
_STREET_TYPES = frozenset(
    {
        "street", "road", "avenue", "lane", "drive", "square", "rue", "boulevard", "place", "chemin",
        "impasse", "strasse", "calle", "avenida", "plaza", "via", "corso", "crescent", "circuit", "close",
        "court", "way", "grove", "terrace", "parade", "highway", "allee", "weg", "platz", "straat", "laan",
        "de", "del", "della", "des", "du", "la", "le", "les", "di", "van", "der", "den", "the", "of", "st",
    }
)  # fmt: skip


def blocking_keys(fields: MatchFields) -> frozenset[str]:
    keys: set[str] = set()
    given_initial, surname_initial = fields.first_joined[:1], fields.last_joined[:1]
    given_code, surname_code = fields.first_phonetic[:_PHONETIC_LENGTH], fields.last_phonetic[:_PHONETIC_LENGTH]
    if given_initial:
        for code in {surname_code, _first_part_code(fields)} - {""}:
            keys.add(f"n:{code}{given_initial}")
        if surname_initial:
            keys.add(f"{GIVEN_NAME_KEY}{fields.first_joined}|{surname_initial}")
    if given_code and surname_code:
        pair = sorted((given_code, surname_code))
        keys.add(f"{NAMES_KEY}{pair[0]}|{pair[1]}")
    if fields.birth_date is not None:
        born = fields.birth_date
        for kind, code in (("y", given_code), ("t", surname_code)):
            if code:
                keys.add(f"{kind}:{code}{born.year}")
        low, high = sorted((born.month, born.day))
        keys.add(f"b:{born.year}{low:02}{high:02}")
    # The caps keep the key count bounded for profiles holding many identifiers; sorting makes the
    # kept ones the same on every write.
    locals_ = sorted({p for p in fields.email_locals if len(p) >= _MIN_LOCAL_PART and p not in GENERIC_LOCAL_PARTS})
    keys.update(f"e:{local}" for local in locals_[:_MAX_EMAILS])
    tails = sorted({t for t in fields.phone_tails if len(t) == 8})
    keys.update(f"p:{tail}" for tail in tails[:_MAX_PHONES])
    for address in fields.addresses[:_MAX_ADDRESSES]:
        keys.update(_address_keys(address, surname_initial))
    return frozenset(keys)


def given_name_prefix(first_joined: str) -> str:
    """What the given-name key (`g:`) of every profile holding this given name (folded and joined,
    `MatchFields.first_joined`) starts with, whatever its surname's initial: how many profiles hold
    a given name is counted by it (`scoring.siblings_names`)."""
    return f"{GIVEN_NAME_KEY}{first_joined}|"


def given_names_held(key_counts: Mapping[str, int], at_least: int) -> frozenset[str]:
    """The given names (`MatchFields.first_joined`) that `at_least` profiles or more hold, from how
    many profiles hold each given-name key (`g:`, one a profile: its given name and surname initial)."""
    held: Counter[str] = Counter()
    for key, count in key_counts.items():
        if key.startswith(GIVEN_NAME_KEY):
            held[key[len(GIVEN_NAME_KEY) :].rpartition("|")[0]] += count
    return frozenset(name for name, count in held.items() if count >= at_least)


def names_key(keys: Iterable[str]) -> str | None:
    """The key of a profile's names (`s:`) among its keys, if it has both names."""
    return next((key for key in keys if key.startswith(NAMES_KEY)), None)


def lookup_keys(fields: MatchFields, keys: Iterable[str]) -> list[str]:
    """The keys one profile's candidates are looked up by (of `keys`, those stored for `fields`): all
    but, for a profile with a birth date and both names' codes, the two keys of its given name alone:

    - the given name + surname initial key (`g:`), whose blocks are a common given name's (up to 369
      profiles at 100,000: 59 of the 98 each was compared with);
    - the given name's sound + birth year key (`y:`): at 100,000 profiles, a third of the look-alikes
      a lookup judged shared only that key with it, and none of them was a candidate in 1,000
      lookups.

    One error in any one field still leaves such a profile a key its lookup reads: its birth date
    (`b:`) for another surname, its surname's keys (`n:`, `t:`, `s:`) for another given name or
    birth date (a property test checks it). What the two keys find beyond that is a look-alike with
    another surname and another birth date, or another address too: FEBRL2 and FEBRL4 lost 2 of
    1,934 and 3 of 5,000 true pairs so, for a quarter of a lookup's time. One without a birth date
    keeps both keys, and finds such look-alikes from its own side. The keys stored, and so the review
    list (which lists those pairs) and the learned model's pairs, are the same."""
    if fields.birth_date is None or not (fields.first_phonetic and fields.last_phonetic):
        return list(keys)
    return [key for key in keys if not key.startswith((GIVEN_NAME_KEY, GIVEN_NAME_YEAR_KEY))]


def given_name_alone(lookup: frozenset[str], a: MatchFields, b_keys: Iterable[str], b: MatchFields) -> bool:
    """Whether a look-alike `b` (holding `b_keys`) shares with the profile `a`, of the keys `a`'s
    lookup read (`lookup`), only the given name + surname initial key (`g:`, the key that finds a
    surname typo changing its Metaphone), under a surname that is another (`scoring.surnames_differ`):
    a given name and an initial in common, nothing else the keys see. A lookup passes it over,
    whichever scorer answers (at 100,000 profiles, 10,325 of 11,217 look-alikes sharing only that
    key, none scoring 0.01 under the rules; a learned model may weigh another surname otherwise, and
    lost 1 of FEBRL3's 6,538 true pairs so, against half its whole-store time: README)."""
    shared = lookup.intersection(b_keys)
    return bool(shared) and all(key.startswith(GIVEN_NAME_KEY) for key in shared) and surnames_differ(a, b)


def namesakes_by_given_name(key: str, a: MatchFields, b: MatchFields) -> bool:
    """Whether two profiles of the group of `key` share, through it, only a given name and an
    initial under another surname: `key` is the given-name key (`g:`, read for a surname typo that
    changed its Metaphone) and their surnames are other names (`scoring.surnames_differ`). The
    review list passes the pair over in that group, whichever scorer answers; another key the two
    share hands it out (at 100,000 profiles, 2.6 million of the 4.9 million pairs compared, none
    scoring 0.5 under the rules)."""
    return key.startswith(GIVEN_NAME_KEY) and surnames_differ(a, b)


def _first_part_code(fields: MatchFields) -> str:
    parts = fields.last_name.split()
    if len(parts) < 2:
        return ""
    return phonetic(parts[0])[:_PHONETIC_LENGTH]


def _address_keys(address: MatchAddress, surname_initial: str) -> set[str]:
    keys: set[str] = set()
    if address.postcode and address.number:
        keys.add(f"a:{address.postcode}{address.number}")
    if address.postcode and surname_initial:
        keys.add(f"q:{address.postcode}{surname_initial}")
    name = next((w for w in address.street.split() if w not in _STREET_TYPES and len(w) > 1), "")
    if address.number and name:
        keys.add(f"r:{address.number}{name[:_STREET_NAME_LENGTH]}")
    return keys


def block_pairs(ids: Sequence[str], fields: Mapping[str, MatchFields]) -> Iterator[tuple[str, str]]:
    """The pairs to compare among the profiles sharing one key, each as (smaller id, larger id): all of
    them in a block of at most `MAX_BLOCK_SIZE`; in a longer one, a sorted neighbourhood: the block
    sorted by surname, given name and birth date, and again by given name, birth date and surname
    (a typo in the first letters of one field moves a record far in one order only), each profile
    paired with the `NEIGHBOURHOOD_WINDOW` - 1 after it in either order. A pair may come twice."""
    members = sorted(ids)
    if len(members) <= MAX_BLOCK_SIZE:
        for index, a in enumerate(members):
            for b in members[index + 1 :]:
                yield a, b
        return
    for order in (_by_surname, _by_given_name):
        # One string a profile, its parts joined by NUL (below every character a name holds: the
        # order of the tuple of parts): a C sort holds the GIL throughout, and comparing strings
        # is several times cheaper than comparing nested tuples of them.
        ranked = sorted(members, key=lambda profile_id: "\0".join((*order(fields[profile_id]), profile_id)))
        for index, a in enumerate(ranked):
            for b in ranked[index + 1 : index + NEIGHBOURHOOD_WINDOW]:
                yield (a, b) if a < b else (b, a)


def block_pair_count(size: int) -> int:
    """How many pairs `block_pairs` hands out for a block of `size` profiles (a pair may come twice in
    a long block, and be shared with another key's block: an upper bound on the pairs it adds)."""
    if size <= MAX_BLOCK_SIZE:
        return size * (size - 1) // 2
    after = NEIGHBOURHOOD_WINDOW - 1  # each profile's partners after it, in each of the two orders
    return 2 * (after * (size - after) + after * (after - 1) // 2)


def _born(fields: MatchFields) -> str:
    return fields.birth_date.isoformat() if fields.birth_date else ""


def _by_surname(fields: MatchFields) -> tuple[str, str, str]:
    return fields.last_joined, fields.first_joined, _born(fields)


def _by_given_name(fields: MatchFields) -> tuple[str, str, str]:
    return fields.first_joined, _born(fields), fields.last_joined
