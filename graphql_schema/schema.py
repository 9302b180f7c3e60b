"""The Strawberry schema. `schema.graphql` beside this file is its exported SDL (kept in sync by a test;
regenerate with `python -m graphql_schema.export`)."""

from __future__ import annotations

import strawberry
from graphql import GraphQLError
from strawberry.types import ExecutionContext

from graphql_schema.errors import ErrorCodes
from graphql_schema.mutations import Mutation
from graphql_schema.queries import Query
from graphql_schema.subscriptions import Subscription


class Schema(strawberry.Schema):
    def process_errors(self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None) -> None:
        """Client mistakes are not server errors: ErrorCodes logs the unexpected ones, with their id."""


schema = Schema(query=Query, mutation=Mutation, subscription=Subscription, extensions=[ErrorCodes])
