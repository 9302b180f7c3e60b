"""The anchor the identity benchmark is judged beside: the `recordlinkage` package's unsupervised ECM
classifier (Fellegi-Sunter weights estimated by expectation-maximisation on binary comparisons) on
the same records, in the same run. `recordlinkage` is a development dependency; the server never
imports it.

Its pipeline is the package's documented one: candidate pairs from the union of blocks on given name,
surname, birth date and postcode (plus a sorted neighbourhood on surname), binary comparisons of
names (Jaro-Winkler >= 0.85), birth date, street number, street, second line, city, postcode and
region, email and phone, then `ECMClassifier().fit_predict`. Values are folded the way our matcher
folds them (lower case, accents and punctuation gone), as one would clean them before linking.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from app.domain.matching import match_fields
from app.domain.profile import Profile
from bench.identity_store import Quality, true_pairs


@dataclass(frozen=True, slots=True)
class AnchorRun:
    quality: Quality
    seconds: float
    candidate_pairs: int


def ecm(profiles: Sequence[Profile], truth: dict[str, str]) -> AnchorRun:
    import pandas as pd  # development only, with recordlinkage
    import recordlinkage

    rows = []
    for p in profiles:
        f = match_fields(p)
        address = f.addresses[0] if f.addresses else None
        rows.append(
            {
                "id": p.id,
                "given": f.first_name or None,
                "surname": f.last_name or None,
                "born": f.birth_date.isoformat() if f.birth_date else None,
                "number": (address.number or None) if address else None,
                "street": (address.street or None) if address else None,
                "line2": (address.line2 or None) if address else None,
                "city": (address.city or None) if address else None,
                "postcode": (address.postcode or None) if address else None,
                "region": (p.addresses[0].region or None) if p.addresses else None,
                "email": f.mailboxes[0] if f.mailboxes else None,
                "phone": f.phone_tails[0] if f.phone_tails else None,
            }
        )
    frame = pd.DataFrame(rows).set_index("id")
    began = time.perf_counter()
    indexer = recordlinkage.Index()
    for column in ("given", "surname", "born", "postcode"):
        indexer.block(column)
    indexer.sortedneighbourhood("surname", window=5)
    pairs = indexer.index(frame)
    compare = recordlinkage.Compare()
    compare.string("given", "given", method="jarowinkler", threshold=0.85, label="given")
    compare.string("surname", "surname", method="jarowinkler", threshold=0.85, label="surname")
    compare.string("street", "street", method="jarowinkler", threshold=0.85, label="street")
    compare.string("line2", "line2", method="jarowinkler", threshold=0.85, label="line2")
    for column in ("born", "number", "city", "postcode", "region", "email", "phone"):
        compare.exact(column, column, label=column)
    features = compare.compute(pairs, frame)
    matches = recordlinkage.ECMClassifier().fit_predict(features)
    seconds = time.perf_counter() - began
    found = {frozenset((a, b)) for a, b in matches}
    expected = true_pairs(truth)
    return AnchorRun(Quality(len(expected), len(found), len(found & expected)), seconds, len(pairs))


def present(profiles: Sequence[Profile]) -> bool:
    """Whether the anchor can run here (recordlinkage installed: `pip install -e '.[dev]'`)."""
    try:
        import recordlinkage  # noqa: F401
    except ImportError:
        return False
    return bool(profiles)
