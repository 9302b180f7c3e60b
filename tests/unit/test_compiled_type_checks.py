"""A compiled plan checks the type of an object that implements an interface as graphql-core does: an
instance of the type's own class passes without asking Strawberry, anything else (another type's
instance, or one cast to another type) is Strawberry's to judge, and a refusal leaves the answer to
graphql-core. Leaves are coerced inline, as the scalar's own coercion does."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import Enum
from typing import Any

import pytest
import strawberry
from graphql import ExecutionResult, parse

from graphql_schema.compiled_queries import QueryCompiler, build_executor, run


@strawberry.interface
class Fruit:
    name: str


@strawberry.type
class Apple(Fruit):
    pass


@strawberry.type
class Pear(Fruit):
    pass


@strawberry.enum
class Ripeness(Enum):
    GREEN = "green"
    RIPE = "ripe"


RETURNED: list[Any] = []


@strawberry.type
class Query:
    @strawberry.field
    def apple(self) -> Apple:
        return RETURNED[0]  # type: ignore[no-any-return]

    @strawberry.field
    def picked(self) -> datetime:
        return datetime(2026, 11, 30, 12, 0, tzinfo=UTC)

    @strawberry.field
    def ripeness(self) -> Ripeness:
        return Ripeness.RIPE


SCHEMA = strawberry.Schema(query=Query, types=[Pear])


async def _compiled(text: str) -> ExecutionResult | None:
    document = parse(text)
    executor = build_executor(SCHEMA._schema, document, {"context_value": None})
    assert not isinstance(executor, list)
    plan = QueryCompiler(SCHEMA).plan_for(document, executor)
    assert plan is not None
    return await run(plan, executor)


@pytest.fixture(autouse=True)
def _returned() -> Any:
    yield
    RETURNED.clear()


async def test_an_instance_of_the_type_is_answered_by_the_plan() -> None:
    RETURNED.append(Apple(name="cox"))
    result = await _compiled("{ apple { name } }")
    assert result is not None and result.data == {"apple": {"name": "cox"}}


async def test_an_instance_of_another_class_is_judged_by_strawberry() -> None:
    RETURNED.append(Pear(name="conference"))  # a Fruit: Strawberry takes it where an Apple is expected
    result = await _compiled("{ apple { name } }")
    interpreted = await SCHEMA.execute("{ apple { name } }")
    assert result is not None and result.data == interpreted.data == {"apple": {"name": "conference"}}


async def test_an_instance_cast_to_another_type_is_left_to_graphql_core() -> None:
    RETURNED.append(strawberry.cast(Pear, Apple(name="cox")))
    assert await _compiled("{ apple { name } }") is None
    interpreted = await SCHEMA.execute("{ apple { name } }")
    assert interpreted.errors and "Expected value of type" in interpreted.errors[0].message


async def test_leaves_are_coerced_as_their_type_coerces_them() -> None:
    result = await _compiled("{ picked ripeness }")
    assert result is not None and result.data == {"picked": "2026-11-30T12:00:00+00:00", "ripeness": "RIPE"}
    interpreted = await SCHEMA.execute("{ picked ripeness }")
    assert interpreted.data == result.data
