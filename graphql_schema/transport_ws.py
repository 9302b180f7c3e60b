"""graphql-transport-ws as served here: every frame a client sends is bounded in bytes by the HTTP body
limit (one limit for both transports; over it the connection is closed with 1009, "message too big"),
and must be a message of the protocol, or the connection is closed with 4400 and the reason.

Strawberry's handler reads `message["type"]` and `message["payload"]["query"]` as they come: a frame
`[1,2]`, a subscribe whose payload is a list, or a `complete` whose id is a list raised out of the
handler and dropped the socket without a close frame. The shape is checked here first; a subscribe
sent before the connection is acknowledged is left to Strawberry, which refuses it (4401) before
anything of it is read.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from graphql import GraphQLError
from starlette.types import Message, Receive, Send
from starlette.websockets import WebSocketDisconnect, WebSocketState
from strawberry.asgi import ASGIWebSocketAdapter
from strawberry.http import GraphQLRequestData
from strawberry.http.exceptions import WebSocketDisconnected
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import BaseGraphQLTransportWSHandler, Operation
from strawberry.subscriptions.protocols.graphql_transport_ws.types import ErrorMessage
from strawberry.subscriptions.protocols.graphql_transport_ws.types import Message as ProtocolMessage

from app import tracing
from graphql_schema import broadcast
from graphql_schema.context import Context
from graphql_schema.documents_by_key import DocumentsByKey
from graphql_schema.limits import LIMIT_EXCEEDED
from graphql_schema.operation_spans import errors_described
from graphql_schema.persisted_queries import PersistedQueries
from graphql_schema.refusals import Refused
from graphql_schema.request_body import TooManyValues

MESSAGE_TOO_BIG = 1009  # RFC 6455


class MessageTooBig(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"message over {limit:,} bytes: send smaller ones")
        self.reason = str(self)


async def with_message_limit(
    serve: Callable[[Receive], Awaitable[None]], receive: Receive, send: Send, limit: int
) -> None:
    """Run `serve` on frames of at most `limit` bytes; a larger one ends it and closes the connection
    with 1009. (The ASGI server has read the frame already: its own frame limit, uvicorn's
    `ws_max_size`, keeps that read bounded; this holds under any server.)"""

    async def bounded() -> Message:
        message = await receive()
        if message["type"] == "websocket.receive" and _over(message, limit):
            raise MessageTooBig(limit)
        return message

    try:
        await serve(bounded)
    except MessageTooBig as refused:
        await send({"type": "websocket.close", "code": MESSAGE_TOO_BIG, "reason": refused.reason})


def _over(message: Message, limit: int) -> bool:
    data = message.get("bytes")
    if data is not None:
        return len(data) > limit
    text: str = message.get("text") or ""
    # UTF-8 takes 1 to 4 bytes a character: encode only when the count of characters leaves it open.
    if len(text) > limit:
        return True
    return len(text) * 4 > limit and len(text.encode()) > limit


class TransportWSHandler(BaseGraphQLTransportWSHandler[Context, None]):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._releases: dict[str, Callable[[], None]] = {}  # by operation id: its document's count (DocumentsByKey)

    async def handle_invalid_message(self, error_message: str) -> None:
        # Strawberry closes a frame it could not decode with "WebSocket message must be valid JSON";
        # one refused for its count of values (request_body.TooManyValues) says the limit, as HTTP does.
        refused = getattr(sys.exc_info()[1], "__cause__", None)
        await super().handle_invalid_message(refused.msg if isinstance(refused, TooManyValues) else error_message)

    async def handle_message(self, message: ProtocolMessage) -> None:
        problem = malformed(message, acknowledged=self.connection_acknowledged)
        if problem is not None:
            await self.handle_invalid_message(problem)
            return
        if message["type"] != "subscribe" or not self.connection_acknowledged:
            await super().handle_message(message)
            return
        payload = message["payload"]
        key, document = self._key(), str(payload.get("query") or payload.get("extensions") or "")
        documents: DocumentsByKey | None = getattr(self.view, "documents_by_key", None)
        refused = (
            untrusted(getattr(self.view, "persisted", None), payload)
            or self._one_too_many(message["id"])
            or (documents.refusal(key, document) if documents is not None else None)
        )
        if refused is not None:  # the operation's error, as for any operation refused before it runs
            error = GraphQLError(refused.message, extensions={"code": refused.code})
            await self.send_message(ErrorMessage(id=message["id"], type="error", payload=[error.formatted]))
            return
        known = message["id"] in self.operations
        await super().handle_message(message)
        operation = self.operations.get(message["id"])
        if documents is not None and not known and operation is not None and operation.task is not None:
            release = documents.hold(key, document)  # for the operation's life, however it ends
            self._releases[message["id"]] = release
            operation.task.add_done_callback(partial(self._ended, message["id"], release))

    def _ended(self, operation_id: str, release: Callable[[], None], _task: object = None) -> None:
        if self._releases.get(operation_id) is release:  # not a later operation's, under an id reused since
            del self._releases[operation_id]
        release()

    async def cleanup_operation(self, operation_id: str) -> None:
        # A client's `complete`: the document's count drops now, not once the cancelled task has ended.
        if (release := self._releases.get(operation_id)) is not None:
            self._ended(operation_id, release)
        await super().cleanup_operation(operation_id)

    def _key(self) -> str:
        """The caller's key (its id, or its name for one without), which the limits count by."""
        principal = getattr(self.context, "principal", None)
        return (principal.key_id or principal.name) if principal is not None else ""

    def _one_too_many(self, operation_id: str) -> Refused | None:
        """The connection's operations at their limit: refused with a code and the way out (Strawberry's
        own refusal, "Subscription limit reached", had neither). An id in use is Strawberry's 4409."""
        limit = self.max_subscriptions_per_connection
        if limit is None or len(self.operations) < limit or operation_id in self.operations:
            return None
        return Refused(
            429,
            f"at most {limit} operations at once on one connection: complete one first, or open another connection",
            code=LIMIT_EXCEEDED,
        )

    async def run_operation(self, operation: Operation[Context, None]) -> None:
        if isinstance(self.websocket, ASGIWebSocketAdapter):  # in the operation's own task: its resolver finds it
            answers = getattr(self.view, "answers_by_watch", None)
            broadcast.serving(
                broadcast.Outlet(operation.id, partial(self._write_shared, operation), key=self._key(), answers=answers)
            )
        tracer = getattr(self.view, "tracer", None)
        if tracer is None:
            await super().run_operation(operation)
            return
        # A span for the operation's whole life (a subscription's: until it completes), a child of the
        # traceparent the client sent with the WebSocket's handshake, if any (app/tracing.py).
        with tracing.operation_span(tracer, getattr(self.context.request, "headers", {})):
            await super().run_operation(operation)

    async def send_message(self, message: ProtocolMessage) -> None:
        """A `next` message's payload is encoded once for every subscriber whose result it is
        (graphql_schema/broadcast.py); the rest as Strawberry sends them. A message with errors marks
        the operation's span, when tracing."""
        if getattr(self.view, "tracer", None) is not None and message["type"] in ("next", "error"):
            payload: Any = message.get("payload")
            errors = payload if message["type"] == "error" else (payload or {}).get("errors")
            if errors:
                tracing.failed(None, errors_described(errors))
        if message["type"] == "next" and isinstance(self.websocket, ASGIWebSocketAdapter):
            metrics = self.context.services.metrics
            built = broadcast.next_frame(message["id"], message["payload"])
            if built is None:
                metrics.child(metrics.subscription_messages, broadcast.ENCODED).inc()
            else:
                frame, how = built
                await broadcast.write_for_waiting(message["id"], message["payload"], metrics)
                await self._write(self.websocket, frame)
                metrics.child(metrics.subscription_messages, how).inc()
                return
        if isinstance(self.websocket, ASGIWebSocketAdapter) and self.websocket.ws.application_state is not (
            WebSocketState.CONNECTED
        ):
            return  # closed by this side (a subscriber cut off, 4029): an operation's `complete` goes nowhere
        await super().send_message(message)

    async def _write_shared(self, operation: Operation[Context, None], frame: str) -> None:
        """A `next` message taken from its group, written as Strawberry's Operation would: not after the
        operation completed; not on a connection that is closing either (its handler is ending the
        operation, and a resolver's error for it would only be logged as unexpected)."""
        socket = self.websocket
        if operation.completed or not isinstance(socket, ASGIWebSocketAdapter):
            return
        if socket.ws.application_state is not WebSocketState.CONNECTED:
            return
        with contextlib.suppress(WebSocketDisconnected):
            await self._write(socket, frame)

    @staticmethod
    async def _write(socket: ASGIWebSocketAdapter, frame: str) -> None:
        try:
            await socket.ws.send_text(frame)
        except WebSocketDisconnect as exc:  # as Strawberry's adapter says it
            raise WebSocketDisconnected from exc


def untrusted(persisted: PersistedQueries | None, payload: Any) -> Refused | None:
    """Why a subscribe's document may not run in the trusted-documents mode (its text must be one of the
    manifest's), or None."""
    if persisted is None or persisted.trusted is None:
        return None
    try:
        persisted.resolve(GraphQLRequestData(payload["query"], None, None, payload.get("extensions")))
    except Refused as refused:
        return refused
    return None


def malformed(message: Any, *, acknowledged: bool) -> str | None:
    """Why `message` is not a graphql-transport-ws message we can act on (a close reason, at most 123
    bytes), or None."""
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        return "each message must be a JSON object with a string type"
    kind = message["type"]
    if kind == "complete" and not isinstance(message.get("id"), str):
        return "complete needs the string id of the operation"
    if kind != "subscribe" or not acknowledged:
        return None
    if not isinstance(message.get("id"), str) or not message["id"]:
        return "subscribe needs a string id"
    payload = message.get("payload")
    if not isinstance(payload, dict) or not isinstance(payload.get("query"), str):
        return "subscribe needs a payload {query: string, variables?: object}"
    for name, kind_of, described in (
        ("variables", dict, "an object"),
        ("extensions", dict, "an object"),
        ("operationName", str, "a string"),
    ):
        if payload.get(name) is not None and not isinstance(payload[name], kind_of):
            return f"subscribe: {name} must be {described}"
    return None
