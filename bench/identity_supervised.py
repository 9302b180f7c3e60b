"""What a learner told the answers reaches on our population's profile pairs: how far better weights
could take the matcher on what it reads, beside what it lists.

`identity_ceiling`'s oracle takes whole groups of pairs knowing their answers in the store it
judges: a group holding one true pair and no wrong one is taken, which no scorer could know, so its
bound is generous. This one learns where it is judged not: a gradient-boosted classifier
(scikit-learn's `HistGradientBoostingClassifier`, a development dependency) is trained on other
seeds' stores, every key-sharing profile pair labelled one person or two, and reads what the rules
read and more: each reason's level, the best similarity of each field, how many profiles hold the
two's names key, and the rules' own score. Its threshold is the one that lists the most true pairs
at the target's precision on its training stores, each predicted by a model trained on the others
(out of fold). Then it lists the judged store's pairs at that threshold; and, as a bound on its
ranking, at the threshold the judged store's answers say is best. True pairs sharing no key count
as missed, as they are for the rules unless a link finds them.

A learner reading what the rules read, given the answers, and doing no better than the rules says
that the pairs left are told from namesakes by nothing we compare: better weights cannot find them,
only new comparisons can.

    found = supervised([compared_1, compared_3, compared_4], compared_2, min_precision)
    found.at_own_threshold, found.best   # Quality each
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bench.identity_ceiling import Compared, ComparedPair
from bench.identity_store import Quality

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

# Fixed, so that a run repeats: no early stopping (it samples a validation split), one seed.
LEARNER = {"max_iter": 300, "learning_rate": 0.05, "early_stopping": False, "random_state": 0}


def present() -> bool:
    """Whether the learner can run here (scikit-learn installed: `pip install -e '.[dev]'`)."""
    try:
        import sklearn  # noqa: F401
    except ImportError:
        return False
    return True


@dataclass(frozen=True, slots=True)
class Supervised:
    at_own_threshold: Quality  # at the threshold chosen on its training stores, as a scorer would list
    best: Quality  # its ranking cut where the judged store's answers say is best at the target's precision


def supervised(train: Sequence[Compared], judged: Compared, min_precision: float) -> Supervised:
    """The judged store's pairs listed by a learner trained on `train` (at least two stores; see the module)."""
    import numpy as np
    from sklearn.ensemble import HistGradientBoostingClassifier

    columns = {name: i for i, name in enumerate(sorted({n for c in train for p in c.pairs for n in _features(p)}))}

    def matrix(compared: Compared) -> NDArray[np.float64]:
        found = np.zeros((len(compared.pairs), len(columns)))
        for row, pair in enumerate(compared.pairs):
            for name, value in _features(pair).items():
                if name in columns:  # a level no training store holds: the learner never saw it
                    found[row, columns[name]] = value
        return found

    def labels(compared: Compared) -> NDArray[np.bool_]:
        return np.array([pair.true for pair in compared.pairs], dtype=bool)

    matrices, answered = [matrix(c) for c in train], [labels(c) for c in train]  # each store read once

    def fit(stores: Sequence[int]) -> HistGradientBoostingClassifier:
        learner = HistGradientBoostingClassifier(**LEARNER)
        return learner.fit(np.vstack([matrices[i] for i in stores]), np.concatenate([answered[i] for i in stores]))

    every = range(len(train))
    held_out = [fit([i for i in every if i != held]).predict_proba(matrices[held])[:, 1] for held in every]
    threshold = _threshold(np.concatenate(held_out), np.concatenate(answered), min_precision)
    scores, answers = fit(every).predict_proba(matrix(judged))[:, 1], labels(judged)

    def listed_at(cut: float) -> Quality:
        listed = scores >= cut
        return Quality(judged.true_count, int(listed.sum()), int((listed & answers).sum()))

    return Supervised(listed_at(threshold), listed_at(_threshold(scores, answers, min_precision)))


def _features(pair: ComparedPair) -> dict[str, float]:
    """What the learner reads of a pair: each reason's level, each field's best similarity, how many
    profiles hold the names key, and the rules' score (in bits, as the rules add them)."""
    score = min(max(pair.score, 1e-9), 1 - 1e-9)
    found = {"rules bits": math.log2(score / (1 - score)), f"names key held by {pair.holders}": 1.0}
    for reason in pair.reasons:
        found[f"{reason.field} {reason.method}"] = 1.0
        similarity = f"{reason.field} similarity"
        found[similarity] = max(found.get(similarity, 0.0), reason.similarity)
    return found


def _threshold(scores: NDArray[np.float64], answers: NDArray[np.bool_], min_precision: float) -> float:
    """The lowest score listing the most true pairs at `min_precision` or better (infinity, listing
    nothing, when no score does: a probability may round to 1.0). Pairs scored alike are listed
    together: a cut is only ever after the last of them."""
    import numpy as np

    order = np.argsort(-scores, kind="stable")
    ranked = scores[order]
    right = np.cumsum(answers[order])
    listed = np.arange(1, len(order) + 1)
    cuts = np.nonzero(np.append(ranked[1:] != ranked[:-1], True))[0]  # the last pair of each score
    precise = cuts[right[cuts] / listed[cuts] >= min_precision]
    if not len(precise):
        return math.inf
    return float(ranked[precise[np.argmax(right[precise])]])
