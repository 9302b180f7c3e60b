"""How identities are reconciled and protected: the merge rules and merge protection in force."""

from __future__ import annotations

from dataclasses import dataclass, field

from app.domain.errors import InvalidInput
from app.domain.identifiers import Identifier
from app.domain.merge_protection import MergeProtection
from app.domain.reconciliation import ReconciliationRules


@dataclass(frozen=True, slots=True)
class IdentityPolicy:
    rules: ReconciliationRules = field(default_factory=ReconciliationRules)
    protection: MergeProtection = field(default_factory=MergeProtection)
    # Merge fuzzy look-alikes scoring at least this after each write (None: never; candidates are
    # then only listed by `mergeCandidates` for a steward to review).
    fuzzy_merge_score: float | None = None

    def usable(self, identifiers: list[Identifier], *, field: str = "identifiers") -> list[Identifier]:
        """The identifiers that may link profiles; blocklisted values never do, and more of a type than
        one profile may hold are refused (they would be two people)."""
        usable = [i for i in identifiers if not self.protection.is_blocked(i)]
        if not usable:
            raise InvalidInput("every identifier is on the merge blocklist: nothing can say who this is", field=field)
        if (crowded := self.protection.crowding(usable)) is not None:
            raise InvalidInput(crowded, field=field)
        return usable
