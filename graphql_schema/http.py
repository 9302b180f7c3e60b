"""GraphQL over HTTP and WebSocket, and the offline playground for browsers."""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from datetime import timedelta

import orjson
from graphql import GraphQLError, OperationDefinitionNode, OperationType, parse
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.types import Message, Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.http import GraphQLHTTPResponse
from strawberry.types.unset import UNSET, UnsetType

from app.bootstrap import Services
from app.settings import Settings
from graphql_schema.auth import connection_credentials, principal_for
from graphql_schema.context import Context
from graphql_schema.key_sockets import SocketsByKey
from graphql_schema.limits import QueryLimits
from graphql_schema.playground import playground_html
from graphql_schema.schema import build_schema

GRAPHQL_RESPONSE = "application/graphql-response+json"
ACCEPTABLE = (GRAPHQL_RESPONSE, "application/json", "application/*", "*/*", "text/html")
# The media type a request asked for, for create_response (which is not given the request).
_answer_as: ContextVar[str] = ContextVar("answer_as", default="application/json")


def limits_of(settings: Settings) -> QueryLimits:
    return QueryLimits(
        max_depth=settings.max_query_depth,
        max_aliases=settings.max_query_aliases,
        max_tokens=settings.max_query_tokens,
        max_cost=settings.max_query_cost,
        page_size=settings.max_page_size,
        introspection=settings.introspection_enabled,
    )


class GraphQLApp(GraphQL[Context, None]):
    """GraphQL over HTTP as its spec says (405 for a mutation over GET, 406 for an Accept we cannot
    serve, application/graphql-response+json when asked for), over WebSocket with graphql-transport-ws
    (connection_init within a few seconds or close 4408, a cap on subscriptions per connection)."""

    def __init__(self, services: Callable[[], Services], settings: Settings) -> None:
        super().__init__(
            build_schema(limits_of(settings)),
            graphql_ide="graphiql",
            allow_queries_via_get=True,
            subscription_protocols=("graphql-transport-ws",),
            connection_init_wait_timeout=timedelta(seconds=settings.ws_init_timeout_seconds),
            max_subscriptions_per_connection=settings.max_subscriptions_per_connection,
        )
        self._services = services
        self._max_body = settings.max_body_bytes
        self.sockets = SocketsByKey()  # closed when their key is revoked (app/main.py watches)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            refusal = _refusal(Request(scope), self._max_body)
            if refusal is not None:
                await refusal(scope, receive, send)
                return
            token = _answer_as.set(_media_type(Request(scope)))
            try:
                await super().__call__(scope, _bounded(receive, self._max_body), send)
            except BodyTooLarge:
                await _too_large(self._max_body)(scope, receive, send)
            finally:
                _answer_as.reset(token)
            return
        services = self._services()
        services.metrics.websockets.inc()
        try:
            await super().__call__(scope, receive, send)
        finally:
            services.metrics.websockets.dec()

    def create_response(
        self, response_data: GraphQLHTTPResponse | list[GraphQLHTTPResponse], sub_response: Response
    ) -> Response:
        response = super().create_response(response_data, sub_response)
        response.headers["content-type"] = _answer_as.get()
        return response

    async def get_context(self, request: Request | WebSocket, response: Response | WebSocket) -> Context:
        services = self._services()
        # A WebSocket's key arrives later, in connection_init (on_ws_connect); a request's in its headers.
        credentials = request.headers.get("authorization") if isinstance(request, Request) else None
        principal, problem = await principal_for(services, credentials)
        return Context(services=services, request=request, response=response, principal=principal, auth_error=problem)

    async def on_ws_connect(self, context: Context) -> UnsetType | dict[str, object] | None:
        """graphql-transport-ws: a connection_init without a valid key is refused, close code 4403
        (the protocol's Forbidden); a subscribe sent before the acknowledgement gets 4401."""
        if context.principal is None:
            credentials = connection_credentials(context.connection_params)
            context.principal, context.auth_error = await principal_for(context.services, credentials)
            if context.principal is None:
                raise ConnectionRejectionError({"message": context.auth_error})
        if context.principal.key_id is not None and isinstance(context.request, WebSocket):
            self.sockets.add(context.principal.key_id, context.request)
        unset: UnsetType = UNSET
        return unset

    async def render_graphql_ide(self, request: Request) -> HTMLResponse:
        return HTMLResponse(playground_html(request.url.path))

    def encode_json(self, data: object) -> str:  # orjson: several times faster on large profiles
        return orjson.dumps(data).decode()


def _accepted(request: Request) -> list[str]:
    header = request.headers.get("accept", "")
    return [part.split(";")[0].strip().lower() for part in header.split(",") if part.strip()]


def _media_type(request: Request) -> str:
    """application/graphql-response+json when the client lists it (the spec's preferred type)."""
    return GRAPHQL_RESPONSE if GRAPHQL_RESPONSE in _accepted(request) else "application/json"


class BodyTooLarge(Exception):
    pass


def _bounded(receive: Receive, limit: int) -> Receive:
    """The request body as sent, refused past `limit` bytes even without a Content-Length."""
    seen = 0

    async def bounded() -> Message:
        nonlocal seen
        message = await receive()
        seen += len(message.get("body", b""))
        if seen > limit:
            raise BodyTooLarge
        return message

    return bounded


def _too_large(limit: int) -> Response:
    return _problem(413, f"request body over {limit:,} bytes: send smaller batches")


def _refusal(request: Request, max_body: int) -> Response | None:
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > max_body:
        return _too_large(max_body)
    accepted = _accepted(request)
    if accepted and not any(media in ACCEPTABLE for media in accepted):
        return _problem(406, f"cannot answer as {request.headers['accept']}: ask for {GRAPHQL_RESPONSE} or "
                        "application/json")  # fmt: skip
    if request.method == "GET" and _is_mutation(request):
        response = _problem(405, "mutations are not allowed over GET: send them with POST")
        response.headers["allow"] = "POST"
        return response
    return None


def _is_mutation(request: Request) -> bool:
    query = request.query_params.get("query")
    if not query:
        return False
    try:
        document = parse(query)
    except GraphQLError:
        return False  # the normal path reports the syntax error
    wanted = request.query_params.get("operationName")
    for definition in document.definitions:
        if isinstance(definition, OperationDefinitionNode) and (
            wanted is None or (definition.name is not None and definition.name.value == wanted)
        ):
            return definition.operation is OperationType.MUTATION
    return False


def _problem(status: int, message: str) -> Response:
    body = {"errors": [{"message": message, "extensions": {"code": "BAD_REQUEST"}}]}
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")
