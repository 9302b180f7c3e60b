"""A subscription event's answer encoded once for its whole group, and written to each subscriber of
the group by the subscriber's own task, without taking it through the execution again.

shared_events.py runs one execution per event for the subscribers who sent the same document with the
same variables under the same key (a group). Each of them still took its copy of the result through
Strawberry's steps for a result (a new ExecutionResult, the extensions' hooks, masking with nothing to
mask), built its `next` message and encoded it: half of the CPU of delivering a change to a thousand
subscribers. Now the first subscriber of a group to take an event executes it as before, and its
`next` message is built around the payload encoded once (`next_frame`, kept by the result's data);
every other subscriber of the group finds that text (`Sharing.sent`) and writes it with its own
operation id, the event never yielded by its resolver. The bytes are those the first subscriber's
message had, bar the id. Most subscribers of a group are not even woken: those waiting when the change
comes are handed by the bus to one of them (app/services/segment_bus.py), which writes the frame for
each of them before its own (`fan_out`; one that stops reading is left to take the change in itself,
never holding the others): 1,000 subscribers of one segment cost the server 53 ms of CPU a change
instead of 95 ms (bench/segments.py). An answer with errors is not shared this way: each subscriber
takes it through its own steps, which mask it and give each its own errorId (graphql_schema/errors.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import orjson
from graphql import ExecutionResult

from app.observability.metrics import Metrics
from app.services.segment_bus import Heard
from graphql_schema import shared_events
from graphql_schema.context import Info
from graphql_schema.documents_by_key import AnswersByWatch

# As shared_events.KEPT: encodings of the events in flight; one pushed out early costs an encoding.
KEPT = 256
log = logging.getLogger("cdp.subscriptions")
FAN_OUT_STEP = 256  # writes (~12 ms) for a group's waiting subscribers between two turns of the loop
STEP_SECONDS = 0.25  # longer for FAN_OUT_STEP writes: a subscriber is not reading (see fan_out)
# How a `next` message had its payload's text (the label of cdp_subscription_messages): encoded for it;
# encoded for another subscriber of its group, the message built by its own steps; or written straight
# from the group's answer, the event never executed for it.
ENCODED, REUSED, BROADCAST = "encoded", "reused", "broadcast"

_encoded: OrderedDict[int, tuple[object, str]] = OrderedDict()  # id(data) -> (data, text)


def next_frame(operation_id: str, payload: Mapping[str, object]) -> tuple[str, str] | None:
    """The graphql-transport-ws `next` message for `payload`, as Strawberry's handler writes it, and
    ENCODED or REUSED (whether its payload was encoded for it), for a subscription whose group shares
    its answers (the running task's Outlet says). None for anything else (a query over WebSocket,
    whose answer nobody else gets, is not kept), for a payload with more than `data` (errors,
    extensions: each subscriber's own), or when orjson refuses it: the view's encoder
    (graphql_schema/http.py) then writes it as it always has."""
    outlet = _outlet.get()
    if outlet is None or not outlet.shared or outlet.operation_id != operation_id or payload.keys() != {"data"}:
        return None
    data = payload["data"]
    found = _encoded.get(id(data))
    how = REUSED
    if found is None or found[0] is not data:  # an id of data gone since, or never encoded
        try:
            # Wrapped as in the message, so that it fails on the same depth as the whole message would.
            text = orjson.dumps({"payload": payload}).decode()
        except TypeError:
            return None
        found = _encoded[id(data)] = (data, text)
        if len(_encoded) > KEPT:
            _encoded.popitem(last=False)
        how = ENCODED
    return outlet.next_prefix + found[1][1:], how


def _encoded_for(data: object) -> str | None:
    found = _encoded.get(id(data))
    return found[1] if found is not None and found[0] is data else None


@dataclass(slots=True)
class Outlet:
    """Where one operation's messages go: its id, and the write of a frame on its connection (which
    sends nothing once the operation completed or the connection closed)."""

    operation_id: str
    write: Callable[[str], Awaitable[None]]
    shared: bool = False  # a subscription taking its group's answers (set by `sharing`)
    # The change being executed for it, whose waiting subscribers it writes the answer for once the
    # answer is encoded, before its own frame (set by the subscription's resolver).
    waiting: Heard | None = None
    # Its key, and how many different answers each key's subscriptions of one watched thing cost a
    # change (graphql_schema/documents_by_key.py; None: not counted).
    key: str = ""
    answers: AnswersByWatch | None = None
    # What comes before an encoded `{"payload":…}`: the keys in the order Strawberry's message has.
    next_prefix: str = field(init=False)

    def __post_init__(self) -> None:
        self.next_prefix = '{"id":' + orjson.dumps(self.operation_id).decode() + ',"type":"next",'


_outlet: ContextVar[Outlet | None] = ContextVar("broadcast_outlet", default=None)


def serving(outlet: Outlet) -> None:
    """The running task serves this operation (graphql_schema/transport_ws.py, in the operation's task)."""
    _outlet.set(outlet)


class Sharing:
    """One subscriber's way to its group's answers."""

    def __init__(self, asked: tuple[object, ...], outlet: Outlet, metrics: Metrics) -> None:
        self._asked = asked
        self.outlet = outlet
        self._broadcast = metrics.child(metrics.subscription_messages, BROADCAST)

    @property
    def group(self) -> Hashable:
        """What its group has in common: the document, operation, variables and caller."""
        return self._asked

    def admitted(self, watched: tuple[str | None, str | None]) -> Callable[[], None]:
        """Its group counted for what it watches, for its life (LimitExceeded: one too many different
        ones for its key); returns what releases it."""
        answers = self.outlet.answers
        return answers.admit(self.outlet.key, watched, self._asked) if answers is not None else _nothing

    async def sent(self, payload: object, heard: Heard) -> bool:
        """True when the group's answer to `payload`, encoded for another subscriber, was written for
        this one (after those of its group who waited on it); False when this subscriber must execute
        it (it is the first, or the answer has errors)."""
        result = shared_events.answered(payload, self._asked)
        if result is None:  # being worked out by another subscriber of the group: awaited
            result = await shared_events.answer(payload, self._asked)
        body = _body(result)
        if body is None:  # the first subscriber has not written its message yet: execute as it did
            return False
        await fan_out(body, heard, self._broadcast)
        await self.outlet.write(self.outlet.next_prefix + body)
        self._broadcast.inc()
        return True


async def write_for_waiting(operation_id: str, payload: Mapping[str, object], metrics: Metrics) -> None:
    """Before the running subscription's own `next` message (just encoded by `next_frame`), the same
    text for the subscribers of its group who waited on it (the bus made it their leader:
    app/services/segment_bus.py)."""
    outlet = _outlet.get()
    if outlet is None or outlet.operation_id != operation_id or outlet.waiting is None:
        return
    heard, outlet.waiting = outlet.waiting, None
    body = _body_of(payload.get("data"))
    if body is None:
        heard.release()
        return
    await fan_out(body, heard, metrics.child(metrics.subscription_messages, BROADCAST))


async def fan_out(body: str, heard: Heard, counter: Any) -> None:
    """Write a group's answer (`body`: its encoded `"payload":…}`) for each subscriber who waited on
    this one, with its own operation id. The loop is let go every FAN_OUT_STEP writes, and a step that
    takes over STEP_SECONDS (a subscriber not reading: its connection stopped taking frames) ends the
    fan-out: that subscriber and those not written yet take the change in themselves, each on its own
    connection, so that one slow client never holds its group (it is then cut off as any slow one)."""
    followers = heard.followers
    if not followers:
        return
    written = turn = 0
    try:
        async with asyncio.timeout(STEP_SECONDS) as step:
            while followers:
                turn += 1
                follower = followers.pop()
                outlet = follower.owner
                try:
                    if isinstance(outlet, Outlet):
                        await outlet.write(outlet.next_prefix + body)
                        written += 1
                except asyncio.CancelledError:  # not written (the deadline, or this task cancelled)
                    follower.settle(heard.event)
                    raise
                except Exception:  # that subscriber's connection failing is its handler's to end, not this one's
                    log.debug("a shared answer could not be written to a subscriber", exc_info=True)
                follower.settle(None)
                if turn % FAN_OUT_STEP == 0:
                    step.reschedule(asyncio.get_running_loop().time() + STEP_SECONDS)
                    await asyncio.sleep(0)
    except TimeoutError:
        log.info("a subscriber did not take a change within %.2f s: %d of its group take it themselves",
                 STEP_SECONDS, len(followers))  # fmt: skip
    finally:
        heard.release()
        counter.inc(written)


def _body(result: ExecutionResult | None) -> str | None:
    """The encoded `"payload":…}` of a shared answer without errors, or None."""
    return None if result is None or result.errors else _body_of(result.data)


def _body_of(data: object) -> str | None:
    """The encoded `"payload":…}` of an answer's data (its text without the opening brace), or None."""
    text = _encoded_for(data)
    return text[1:] if text is not None else None


def _nothing() -> None:
    pass


def sharing(info: Info) -> Sharing | None:
    """For a subscription served over graphql-transport-ws by our handler, with a caller its answers can
    be shared with; else None (each event is executed for it)."""
    outlet = _outlet.get()
    if outlet is None:
        return None
    asked = shared_events.asked(info.operation, info.variable_values, info.context)
    if not asked:
        return None
    outlet.shared = True
    return Sharing(asked, outlet, info.context.services.metrics)
