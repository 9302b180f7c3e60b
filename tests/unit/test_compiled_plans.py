"""A compiled plan answers as graphql-core does, on a small schema made here:
- the type of an object that implements an interface: an instance of the type's own class passes
  without asking Strawberry, anything else (another type's instance, one cast to another type) is
  Strawberry's to judge, and a refusal leaves the answer to graphql-core;
- leaves are coerced inline, as the scalar's own coercion does;
- objects with only attribute fields, and lists of them, are completed in their parent's code: nulls,
  tuples and missing required values come out as graphql-core has them;
- resolvers called from the generated code (with or without info and arguments) answer as through
  Strawberry's wrapper, an awaitable with the rest of its level, a null where none may be left to
  graphql-core;
- objects with resolvers are written in place too, for instances of their own class: a list's item of
  another class or a null goes to the item's own completion, a cast one to graphql-core."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from enum import Enum
from typing import Any

import pytest
import strawberry
from graphql import ExecutionResult, Undefined, parse
from pydantic_core import TzInfo

from graphql_schema.compiled_queries import _PRESENT_CLASSES, QueryCompiler, _present, build_executor, run
from graphql_schema.datetime_scalar import DATETIME


@strawberry.interface
class Fruit:
    name: str


@strawberry.type
class Apple(Fruit):
    @strawberry.field
    def size(self) -> int:
        return len(self.name)


@strawberry.type
class Pear(Fruit):
    pass


@strawberry.enum
class Ripeness(Enum):
    GREEN = "green"
    RIPE = "ripe"


@strawberry.type
class Label:
    text: str
    at: datetime


@strawberry.type
class Box:
    name: str
    label: Label | None
    labels: list[Label]
    sealed: Label


@strawberry.type
class Crate:
    name: str
    label: strawberry.Private[Label | None]

    @strawberry.field
    def size(self) -> int:
        return len(self.name)

    @strawberry.field
    def note(self, prefix: str, times: int = 1, upper_case: bool = False) -> str:
        return prefix * times + (self.name.upper() if upper_case else self.name)

    @strawberry.field
    def spare(self, info: strawberry.Info) -> Label | None:
        assert info.field_name == "spare" and info.path.key == "spare"  # more than the context: the real info
        return self.label

    @strawberry.field
    async def weight(self, info: strawberry.Info) -> float:
        return len(self.name) / 2

    @strawberry.field
    def required(self) -> Label:
        return self.label  # type: ignore[return-value]  # None for a test: graphql-core says what is wrong


class Deny(strawberry.BasePermission):
    message = "no"

    def has_permission(self, source: Any, info: strawberry.Info, **kwargs: Any) -> bool:
        return False


@strawberry.type
class Vault:
    name: str
    secret: str | None = strawberry.field(default="s3cret", permission_classes=[Deny])


RETURNED: list[Any] = []
BOXES: list[Any] = []
CRATES: list[Any] = []


@strawberry.type
class Query:
    @strawberry.field
    def apple(self) -> Apple:
        return RETURNED[0]  # type: ignore[no-any-return]

    @strawberry.field
    def apples(self) -> list[Apple | None]:
        return RETURNED

    @strawberry.field
    def boxes(self) -> list[Box | None]:
        return BOXES

    @strawberry.field
    def crates(self) -> list[Crate]:
        return CRATES

    @strawberry.field
    def picked(self) -> datetime:
        return datetime(2026, 11, 30, 12, 0, tzinfo=UTC)

    @strawberry.field
    def ripeness(self) -> Ripeness:
        return Ripeness.RIPE

    @strawberry.field
    def vault(self) -> Vault:
        return Vault(name="v")


SCHEMA = strawberry.Schema(query=Query, types=[Pear])


async def _compiled(text: str, schema: strawberry.Schema = SCHEMA) -> ExecutionResult | None:
    document = parse(text)
    executor = build_executor(schema._schema, document, {"context_value": None})
    assert not isinstance(executor, list)
    plan = QueryCompiler(schema).plan_for(document, executor)
    assert plan is not None
    return await run(plan, executor)


@pytest.fixture(autouse=True)
def _returned() -> Any:
    yield
    RETURNED.clear()
    BOXES.clear()
    CRATES.clear()


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


async def test_times_are_written_as_the_schema_s_scalar_writes_them_kept_or_not() -> None:
    """With the server's DateTime (graphql_schema/datetime_scalar.py), a plan looks the text of a time
    as the stores read it (pydantic's UTC) up in the scalar's kept texts, in place, and asks the scalar
    for any other: the same texts as the interpreter's, the first time a time is met and after."""
    schema = strawberry.Schema(query=Query, types=[Pear], scalar_overrides={datetime: DATETIME})
    stored = datetime(2031, 2, 3, 4, 5, 6, 789000, tzinfo=TzInfo(0))  # a time no other test writes
    times = [
        stored,
        stored.replace(tzinfo=UTC),  # the same instant with the standard library's UTC
        stored.astimezone(timezone(timedelta(hours=2))),
        stored.replace(tzinfo=None),
        datetime(2031, 2, 3, 4, 5, 7, tzinfo=TzInfo(0)),
    ]
    BOXES.append(_box("times", None, [Label(text=str(n), at=at) for n, at in enumerate(times)], Label(text="s", at=AT)))
    query = "{ boxes { labels { text at } } }"
    for _ in range(2):  # written, then kept
        compiled = await _compiled(query, schema)
        interpreted = await schema.execute(query)
        assert interpreted.errors is None
        assert compiled is not None and compiled.data == interpreted.data
        assert [label["at"] for label in compiled.data["boxes"][0]["labels"]] == [at.isoformat() for at in times]


async def test_an_attribute_with_a_permission_is_read_through_it() -> None:
    """Found by an audit: an attribute field was read directly, its permission skipped (no type of the
    schema has one yet; the first per-field read:pii on a plain field would have been bypassed)."""
    interpreted = await SCHEMA.execute("{ vault { name secret } }")
    assert interpreted.data == {"vault": {"name": "v", "secret": None}}
    assert interpreted.errors is not None and interpreted.errors[0].message == "no"
    compiled = await _compiled("{ vault { name secret } }")  # None: the plan leaves the answer to graphql-core
    assert compiled is None or (compiled.data, [e.message for e in compiled.errors or []]) == (interpreted.data, ["no"])


AT = datetime(2026, 11, 30, 9, 30, tzinfo=UTC)
BOXES_QUERY = "{ boxes { name label { text at } labels { text at } sealed { text } } }"


def _box(name: str, label: Any, labels: Any, sealed: Any) -> Box:
    return Box(name=name, label=label, labels=labels, sealed=sealed)


async def test_objects_below_are_completed_in_place_as_graphql_core_completes_them() -> None:
    first, second = Label(text="fragile", at=AT), Label(text="this way up", at=AT)
    BOXES.extend([
        _box("a", first, [first, second], second),
        None,
        _box("b", None, (second,), first),  # a tuple is a list to graphql-core
        _box("c", second, [], first),
    ])  # fmt: skip
    compiled = await _compiled(BOXES_QUERY)
    interpreted = await SCHEMA.execute(BOXES_QUERY)
    assert interpreted.errors is None
    assert compiled is not None and compiled.data == interpreted.data
    assert compiled.data["boxes"][0]["labels"][1] == {"text": "this way up", "at": "2026-11-30T09:30:00+00:00"}


@pytest.mark.parametrize(
    "box",
    [
        _box("no seal", None, [], None),  # a null where the type is non-null
        _box("null item", None, [None], Label(text="x", at=AT)),  # a null item of a [Label!]
        _box("bad time", Label(text="x", at="yesterday"), [], Label(text="x", at=AT)),  # not a time
    ],
)
async def test_what_an_object_below_cannot_complete_is_left_to_graphql_core(box: Box) -> None:
    BOXES.append(box)
    assert await _compiled(BOXES_QUERY) is None
    interpreted = await SCHEMA.execute(BOXES_QUERY)
    assert interpreted.errors


CRATES_QUERY = """query($prefix: String!) { crates { name size note(prefix: $prefix)
  twice: note(prefix: "-", times: 2, upperCase: true) weight spare { text at } } }"""


async def test_resolvers_called_in_place_answer_as_through_strawberry() -> None:
    CRATES.extend([Crate(name="tea", label=Label(text="dry", at=AT)), Crate(name="coffee", label=None)])
    document = parse(CRATES_QUERY)
    executor = build_executor(SCHEMA._schema, document, {"context_value": None, "variable_values": {"prefix": ">"}})
    assert not isinstance(executor, list)
    plan = QueryCompiler(SCHEMA).plan_for(document, executor)
    assert plan is not None
    compiled = await run(plan, executor)
    interpreted = await SCHEMA.execute(CRATES_QUERY, variable_values={"prefix": ">"})
    assert interpreted.errors is None
    assert compiled is not None and compiled.data is not None and compiled.data == interpreted.data
    assert compiled.data["crates"][0] == {
        "name": "tea",
        "size": 3,
        "note": ">tea",
        "twice": "--TEA",
        "weight": 1.5,
        "spare": {"text": "dry", "at": "2026-11-30T09:30:00+00:00"},
    }
    assert list(compiled.data["crates"][1]) == ["name", "size", "note", "twice", "weight", "spare"]  # in order


async def test_a_resolver_s_null_where_none_may_be_is_left_to_graphql_core() -> None:
    CRATES.append(Crate(name="tea", label=None))
    assert await _compiled("{ crates { required { text } } }") is None
    interpreted = await SCHEMA.execute("{ crates { required { text } } }")
    assert interpreted.errors and "non-nullable" in interpreted.errors[0].message


async def test_objects_with_resolvers_in_a_list_are_completed_in_place_and_others_as_before() -> None:
    RETURNED.extend([Apple(name="cox"), Pear(name="conference"), None, Apple(name="gala")])
    compiled = await _compiled("{ apples { name size } }")
    interpreted = await SCHEMA.execute("{ apples { name size } }")
    assert interpreted.errors is None
    assert compiled is not None and compiled.data == interpreted.data
    assert compiled.data is not None and compiled.data["apples"][3] == {"name": "gala", "size": 4}

    RETURNED.append(strawberry.cast(Pear, Apple(name="cox")))
    assert await _compiled("{ apples { name size } }") is None
    interpreted = await SCHEMA.execute("{ apples { name size } }")
    assert interpreted.errors and "Expected value of type" in interpreted.errors[0].message


class _Claims:
    """An object that says it is of another class (a proxy's way), whatever its own."""

    def __init__(self, claimed: type) -> None:
        self.claimed = claimed

    @property  # type: ignore[misc]
    def __class__(self) -> type:
        return self.claimed


def test_a_class_is_told_present_by_its_instances_only_where_each_would_be() -> None:
    assert not any(_present(value) for value in (None, Undefined, ValueError("no"), _Claims(KeyError)))
    assert not {type(None), type(Undefined), ValueError, _Claims} & _PRESENT_CLASSES
    label = Label(text="x", at=AT)
    assert _present(label) and Label in _PRESENT_CLASSES  # learned: its next instances cost a set lookup
    assert _present(_Claims(Label)) and _Claims not in _PRESENT_CLASSES  # each of its instances may say otherwise
