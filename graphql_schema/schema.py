"""The Strawberry schema. `schema.graphql` beside this file is its exported SDL (kept in sync by a test;
regenerate with `python -m graphql_schema.export`)."""

from __future__ import annotations

import strawberry

from graphql_schema.errors import ErrorCodes
from graphql_schema.mutations import Mutation
from graphql_schema.queries import Query

schema = strawberry.Schema(query=Query, mutation=Mutation, extensions=[ErrorCodes])
