"""How identities are reconciled and protected: the merge rules and merge protection in force."""

from __future__ import annotations

from dataclasses import dataclass, field

from app.domain.errors import InvalidInput
from app.domain.identifiers import Identifier
from app.domain.merge_protection import MergeProtection
from app.domain.reconciliation import ReconciliationRules
from app.services.ports import StoreTransaction


@dataclass(frozen=True, slots=True)
class IdentityPolicy:
    rules: ReconciliationRules = field(default_factory=ReconciliationRules)
    protection: MergeProtection = field(default_factory=MergeProtection)
    # Merge fuzzy look-alikes scoring at least this after each write (None: never; candidates are
    # then only listed by `mergeCandidates` for a steward to review).
    fuzzy_merge_score: float | None = None

    def usable(self, identifiers: list[Identifier], *, field: str = "identifiers") -> Linking:
        """The identifiers that may link profiles (blocklisted values never do), and why they may be two
        people's: more of a type than one profile may hold. InvalidInput when none is left."""
        usable = [i for i in identifiers if not self.protection.is_blocked(i)]
        if not usable:
            raise InvalidInput("every identifier is on the merge blocklist: nothing can say who this is", field=field)
        return Linking(usable, self.protection.crowding(usable), field)


@dataclass(frozen=True, slots=True)
class Linking:
    """A write's identifiers that may link profiles. `crowded`: why they are more of a type than one
    profile may hold (two customerIds), or None. Such a write is two people's, unless a profile holds
    every one of those already (a steward's merge, a limit lowered since): the README says a profile
    past a limit counts as holding its own, and refused at validation, before any read, an event
    naming a customer's own three emails was REJECTED once the limit went down to two."""

    identifiers: list[Identifier]
    crowded: str | None = None
    field: str = "identifiers"

    async def refuse_unless_own(self, tx: StoreTransaction, protection: MergeProtection) -> None:
        """InvalidInput (`crowded`) unless one profile holds every identifier counted past a limit."""
        if self.crowded is None:
            return
        counted = protection.crowded(self.identifiers)
        owners = await tx.owners_of([i.key for i in counted])
        if len(owners) < len({i.key for i in counted}) or len(set(owners.values())) != 1:
            raise InvalidInput(self.crowded, field=self.field)
