"""Blocking keys: the few short strings under which a profile is indexed so that its likely
duplicates are found by "profiles sharing any of these keys" instead of by comparing all pairs.

Each key tolerates a different kind of noise, so that two records of one person share at least one
key even when one of them has a typo, a nickname, swapped names or a missing field; and each is
narrow enough that few unrelated people share it. Keys are prefixed by their kind:

- `n:` Metaphone of the surname + first letter of the given name: survives a given-name typo or nickname;
- `s:` the Metaphones of both names in sorted order: the same key whichever field holds which, so
  swapped first/last names meet (narrower than a given name + initial, which common given names flood);
- `y:` Metaphone of the given name + birth year: survives a surname typo or a married name;
- `b:` birth date with day and month in ascending order (so a day/month swap gives the same key)
  + the given-name initial, and again + the surname initial;
- `e:` email local part without dots, separators or +tag: the same mailbox at any provider;
- `p:` the phone's last 8 digits: the subscriber number whatever country code was typed;
- `a:` postcode + house number (or + surname initial when there is no number).
"""

from __future__ import annotations

from app.domain.matching.fields import MatchFields
from app.domain.matching.scoring import GENERIC_LOCAL_PARTS

MAX_BLOCKING_KEYS = 12
_PHONETIC_LENGTH = 5
_MAX_EMAILS = 3
_MAX_PHONES = 2
_MAX_ADDRESSES = 2
_MIN_LOCAL_PART = 3


def blocking_keys(fields: MatchFields) -> frozenset[str]:
    keys: set[str] = set()
    given_initial, surname_initial = fields.first_joined[:1], fields.last_joined[:1]
    if fields.last_phonetic and given_initial:
        keys.add(f"n:{fields.last_phonetic[:_PHONETIC_LENGTH]}{given_initial}")
    if fields.first_phonetic and fields.last_phonetic:
        pair = sorted((fields.first_phonetic[:_PHONETIC_LENGTH], fields.last_phonetic[:_PHONETIC_LENGTH]))
        keys.add(f"s:{pair[0]}|{pair[1]}")
    if fields.birth_date is not None:
        born = fields.birth_date
        if fields.first_phonetic:
            keys.add(f"y:{fields.first_phonetic[:_PHONETIC_LENGTH]}{born.year}")
        low, high = sorted((born.month, born.day))
        day = f"{born.year}{low:02}{high:02}"
        for initial in {given_initial, surname_initial} - {""}:
            keys.add(f"b:{day}{initial}")
    # The caps keep the key count bounded for profiles holding many identifiers; sorting makes the
    # kept ones the same on every write.
    locals_ = sorted({p for p in fields.email_locals if len(p) >= _MIN_LOCAL_PART and p not in GENERIC_LOCAL_PARTS})
    keys.update(f"e:{local}" for local in locals_[:_MAX_EMAILS])
    tails = sorted({t for t in fields.phone_tails if len(t) == 8})
    keys.update(f"p:{tail}" for tail in tails[:_MAX_PHONES])
    for address in fields.addresses[:_MAX_ADDRESSES]:
        if address.postcode and (address.number or surname_initial):
            keys.add(f"a:{address.postcode}{address.number or surname_initial}")
    return frozenset(keys)
