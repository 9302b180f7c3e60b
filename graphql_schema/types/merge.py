"""GraphQL results of merge and unmerge."""

from __future__ import annotations

import strawberry

from graphql_schema.types.merge_record import Merge
from graphql_schema.types.profile import Profile


@strawberry.type
class MergeResult:
    merge: Merge
    profile: Profile


@strawberry.type
class UnmergeResult:
    merge: Merge
    profiles: list[Profile] = strawberry.field(description="The survivor first, then the profiles restored.")
