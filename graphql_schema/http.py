"""GraphQL over HTTP and WebSocket, and the offline playground for browsers."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable
from contextvars import ContextVar
from datetime import timedelta
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import orjson
from cross_web import AsyncHTTPRequestAdapter, HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError, MissingQueryError
from strawberry.http import GraphQLHTTPResponse, GraphQLRequestData, process_result
from strawberry.http.base import BaseRequestProtocol
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError
from strawberry.types import ExecutionResult
from strawberry.types.graphql import OperationType
from strawberry.types.unset import UNSET, UnsetType

from app import tracing
from app.bootstrap import Services
from app.domain.access import Principal
from app.settings import Settings
from graphql_schema import compiled_requests, request_body
from graphql_schema.auth import MISSING, connection_credentials, principal_for
from graphql_schema.context import Context
from graphql_schema.documents_by_key import AnswersByWatch, DocumentsByKey
from graphql_schema.key_sockets import SocketsByKey
from graphql_schema.limits import LIMIT_EXCEEDED, QueryLimits
from graphql_schema.operation_spans import errors_described
from graphql_schema.persisted_queries import PersistedQueries
from graphql_schema.playground import content_security_policy, playground_html
from graphql_schema.refusals import UNAUTHENTICATED, Refused, refusal
from graphql_schema.schema import build_schema
from graphql_schema.transport_ws import TransportWSHandler, with_message_limit

if TYPE_CHECKING:  # OpenTelemetry is an optional extra (app/tracing.py)
    from opentelemetry.trace import Tracer

log = logging.getLogger("cdp.graphql")

GRAPHQL_RESPONSE = "application/graphql-response+json"
ACCEPTABLE = (GRAPHQL_RESPONSE, "application/json", "application/*", "*/*", "text/html")
# The media type a request asked for, for create_response (which is not given the request).
_answer_as: ContextVar[str] = ContextVar("answer_as", default="application/json")
# A request as `_compiled` parsed it (and found its persisted document), for `parse_http_body` when the
# full path answers: a batch of events is parsed once, not twice.
_parsed_request: ContextVar[GraphQLRequestData | None] = ContextVar("parsed_request", default=None)


def limits_of(settings: Settings) -> QueryLimits:
    return QueryLimits(
        max_depth=settings.max_query_depth,
        max_aliases=settings.max_query_aliases,
        max_tokens=settings.max_query_tokens,
        max_cost=settings.max_query_cost,
        max_length=settings.max_query_length,
        page_size=settings.max_page_size,
        introspection=settings.introspection_enabled,
    )


class GraphQLApp(GraphQL[Context, None]):
    """GraphQL over HTTP as its spec says, SHOULDs included (405 for a mutation over GET, 406 for an
    Accept we cannot serve, application/graphql-response+json when asked for, and then 400 without
    `data` for a request that never ran), over WebSocket with graphql-transport-ws (connection_init
    within a few seconds or close 4408, a cap on subscriptions per connection).

    The API key is checked before anything else: a request without a valid one gets 401 with its
    body unread, so an anonymous client costs no parsing, validation or cache space. Only the
    playground page is served to anyone."""

    graphql_transport_ws_handler_class = TransportWSHandler

    def __init__(self, services: Callable[[], Services], settings: Settings, *, tracer: Tracer | None = None) -> None:
        super().__init__(
            build_schema(limits_of(settings), compiled_execution=settings.compiled_execution, traced=bool(tracer)),
            graphql_ide="graphiql",
            allow_queries_via_get=True,
            subscription_protocols=("graphql-transport-ws",),
            connection_init_wait_timeout=timedelta(seconds=settings.ws_init_timeout_seconds),
            max_subscriptions_per_connection=settings.max_subscriptions_per_connection,
        )
        self._services = services
        self._max_body = settings.max_body_bytes
        self.persisted = PersistedQueries.of(settings)
        self.sockets = SocketsByKey()  # closed when their key is revoked (app/main.py watches)
        self.documents_by_key = DocumentsByKey(settings.max_subscription_documents_per_key)
        self.answers_by_watch = AnswersByWatch(settings.max_subscription_documents_per_key)
        self.tracer = tracer  # None: tracing off, nothing below makes a span

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            request = Request(scope, request_body.bounded(receive, self._max_body))
            response = await (self._answer(request) if self.tracer is None else self._traced(request, self.tracer))
            await response(scope, receive, send)
            return
        services = self._services()
        services.metrics.websockets.inc()

        async def serve(bounded: Receive) -> None:
            await super(GraphQLApp, self).__call__(scope, bounded, send)

        try:
            await with_message_limit(serve, receive, send, self._max_body)
        finally:
            services.metrics.websockets.dec()

    async def _traced(self, request: Request, tracer: Tracer) -> Response:
        """`_answer` within the operation's span (app/tracing.py), whichever executor answers: the one
        place every GraphQL request over HTTP passes. The playground page is no operation."""
        if self.should_render_graphql_ide(self.request_adapter_class(request)):
            return await self._answer(request)
        with tracing.operation_span(tracer, request.headers) as span:
            response = await self._answer(request)
            span.set_attribute("http.response.status_code", response.status_code)
            if response.status_code >= 400:  # refused before it ran; a 400 with errors said which already
                tracing.failed(span, f"HTTP {response.status_code}")
            return response

    async def _answer(self, request: Request) -> Response:
        media_type = _media_type(request)
        playground = self.should_render_graphql_ide(self.request_adapter_class(request))
        if not playground:
            credentials = request.headers.get("authorization")
            principal, problem = await principal_for(self._services(), credentials, request.scope)
            if principal is None:
                challenge = 'Bearer error="invalid_token"' if credentials else "Bearer"
                return refusal(
                    401,
                    problem or MISSING,
                    code=UNAUTHENTICATED,
                    headers={"www-authenticate": challenge},
                    media_type=media_type,
                )
            _authenticated(request, principal)
        if refused := _refusal(request, self._max_body):
            return refused
        token, parsed = _answer_as.set(media_type), _parsed_request.set(None)
        try:
            if not playground and (compiled := await self._compiled(request)) is not None:
                return compiled
            return await self.run(request)
        except request_body.BodyTooLarge:
            return _too_large(self._max_body)
        except Refused as exc:
            return exc.response(media_type)
        except HTTPException as exc:  # what Strawberry refuses itself
            return refusal(exc.status_code, exc.reason, media_type=media_type)
        finally:
            _parsed_request.reset(parsed)
            _answer_as.reset(token)

    async def _compiled(self, request: Request) -> Response | None:
        """The answer of a compiled query without Strawberry's view (graphql_schema/compiled_requests.py);
        None for every other request, which `run` answers. A persisted query's document is found first
        (or the request refused: graphql_schema/persisted_queries.py)."""
        try:
            if request.method == "GET":
                data = request_body.from_query(request.query_params)
            elif request.method == "POST":
                headers = request.headers
                data = request_body.from_post(
                    headers.get("content-type"), await request.body(), headers.get("content-encoding")
                )
            else:
                return None
        except Refused:
            return None  # `run` refuses it again, with the same words
        data = self.persisted.resolve(data)
        _parsed_request.set(data)
        sub_response = await self.get_sub_response(request)
        context = await self.get_context(request, sub_response)
        result = await compiled_requests.answer(self.schema, data, context)  # type: ignore[arg-type]
        return None if result is None else self.create_response(process_result(result), sub_response)

    async def parse_http_body(self, request: AsyncHTTPRequestAdapter) -> GraphQLRequestData:
        parsed = _parsed_request.get()
        if parsed is not None:
            return parsed
        if request.method == "GET":
            data = request_body.from_query({k: v for k, v in request.query_params.items() if isinstance(v, str)})
        else:
            encoding = request.headers.get("content-encoding")
            data = request_body.from_post(request.content_type, await request.get_body(), encoding)
        return self.persisted.resolve(data)

    def decode_json(self, data: str | bytes) -> object:  # also what reads WebSocket frames
        return request_body.decode_json(data)

    async def execute_single(
        self,
        request: Request,
        request_adapter: AsyncHTTPRequestAdapter,
        sub_response: Response,
        context: Context,
        root_value: None,
        request_data: GraphQLRequestData,
    ) -> ExecutionResult:
        """Strawberry's, except that subscriptions are refused over HTTP (Strawberry allows them for
        its multipart transport, which is not served here, and would run one as a query) and that a
        mutation over GET is 405 as the spec says."""
        allowed = OperationType.from_http(request_adapter.method) - {OperationType.SUBSCRIPTION}
        try:
            return await self.schema.execute(
                request_data.query,
                root_value=root_value,
                variable_values=request_data.variables,
                context_value=context,
                operation_name=request_data.operation_name,
                allowed_operation_types=allowed,
                operation_extensions=request_data.extensions,
            )
        except InvalidOperationTypeError as exc:
            if exc.operation_type is OperationType.SUBSCRIPTION:
                raise Refused(400, "subscriptions are served over WebSocket (graphql-transport-ws), not HTTP") from None
            raise Refused(
                405, "mutations are not allowed over GET: send them with POST", headers={"allow": "POST"}
            ) from None
        except CannotGetOperationTypeError as exc:
            raise Refused(400, exc.as_http_error_reason()) from None
        except MissingQueryError:
            raise Refused(400, 'the request has no GraphQL document: send {"query": "…"}') from None

    def create_response(
        self, response_data: GraphQLHTTPResponse | list[GraphQLHTTPResponse], sub_response: Response
    ) -> Response:
        media_type = _answer_as.get()
        status = sub_response.status_code or 200
        if self.tracer is not None and isinstance(response_data, dict) and (errors := response_data.get("errors")):
            tracing.failed(None, errors_described(errors))  # the operation's span
        if media_type == GRAPHQL_RESPONSE and isinstance(response_data, dict) and _never_ran(response_data):
            # The spec's SHOULD for this media type: a request that did not run (a document that did not
            # parse or validate, variables that did not coerce) is 400 and has no data entry.
            response_data.pop("data", None)
            status = 400
        body, encoded = _encoded(response_data)
        response = Response(body, status_code=status if encoded else 500, media_type=media_type)
        response.headers.raw.extend(sub_response.headers.raw)
        response.background = sub_response.background
        return response

    async def get_context(self, request: Request | WebSocket, response: Response | WebSocket) -> Context:
        services = self._services()
        if isinstance(request, WebSocket):  # its key arrives later, in connection_init (on_ws_connect)
            return Context(services=services, request=request, response=response)
        principal = _principal_of(request)  # checked in _answer (None: the playground page)
        problem = None if principal else MISSING
        return Context(services=services, request=request, response=response, principal=principal, auth_error=problem)

    async def on_ws_connect(self, context: Context) -> UnsetType | dict[str, object] | None:
        """graphql-transport-ws: a connection_init without a valid key is refused, close code 4403
        (the protocol's Forbidden); a subscribe sent before the acknowledgement gets 4401."""
        if context.principal is None:
            credentials = connection_credentials(context.connection_params)
            context.principal, context.auth_error = await principal_for(
                context.services, credentials, context.request.scope
            )
            if context.principal is None:
                raise ConnectionRejectionError({"message": context.auth_error})
        if context.principal.key_id is not None and isinstance(context.request, WebSocket):
            self.sockets.add(context.principal.key_id, context.request)
        unset: UnsetType = UNSET
        return unset

    def should_render_graphql_ide(self, request: BaseRequestProtocol) -> bool:
        """A browser opening /graphql; not a GET of a persisted query, which has no `query` either."""
        return super().should_render_graphql_ide(request) and request.query_params.get("extensions") is None

    async def render_graphql_ide(self, request: Request) -> HTMLResponse:
        seeding = self._services().seeding
        page = playground_html(request.url.path, still_loading=seeding.describe() if seeding.seeding else None)
        return HTMLResponse(
            page, headers={**PLAYGROUND_HEADERS, "content-security-policy": content_security_policy(page)}
        )

    def encode_json(self, data: object) -> str:
        return _encoded(data)[0].decode()


# The playground keeps the key a developer pastes in the browser's storage: no other site may show
# it in a frame (a click there would run the page's operations with that key), it tells nobody
# where it was opened from, and it runs only its own scripts (content_security_policy, per page).
PLAYGROUND_HEADERS = {
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
}


def _authenticated(request: Request, principal: Principal) -> None:
    request.state.principal = principal


def _principal_of(request: Request) -> Principal | None:
    principal = getattr(request.state, "principal", None)
    return principal if isinstance(principal, Principal) else None


def _never_ran(response_data: GraphQLHTTPResponse) -> bool:
    """No data and only errors without a path: errors of the request, raised before execution."""
    if response_data.get("data") is not None:
        return False
    errors = response_data.get("errors") or []
    return bool(errors) and all(isinstance(e, dict) and "path" not in e for e in errors)


def _encoded(data: object) -> tuple[bytes, bool]:
    """(JSON text in UTF-8, True); (a GraphQL error as JSON, False) when `data` cannot be encoded.

    orjson first (several times faster on large profiles); what it refuses (nesting past 255 levels,
    an integer past 64 bits) goes to the standard encoder, and what neither can encode becomes an
    error that finds the log line, never a 500 in text/plain. Bytes, as a response sends them: a
    list of members' interactions is 260 KB, decoded to text and encoded back for nothing before."""
    try:
        return orjson.dumps(data), True
    except TypeError:
        pass
    try:
        # ASCII escapes: a lone surrogate (which orjson refuses) stays valid JSON text.
        return json.dumps(data, separators=(",", ":"), allow_nan=False).encode(), True
    except (TypeError, ValueError, RecursionError) as exc:
        error_id = uuid.uuid4().hex[:12]
        log.error("response not encodable as JSON %s: %s", error_id, exc, extra={"errorId": error_id})
        error = {
            "message": "Internal server error: the answer could not be encoded as JSON",
            "extensions": {"code": "INTERNAL_SERVER_ERROR", "errorId": error_id},
        }
        return _instead(data, error), False


def _instead(data: object, error: dict[str, Any]) -> bytes:
    """The error in the place of `data`: a graphql-transport-ws message keeps its id and type."""
    if isinstance(data, dict) and isinstance(data.get("id"), str) and data.get("type") in ("next", "error"):
        payload: object = [error] if data["type"] == "error" else {"data": None, "errors": [error]}
        return orjson.dumps({"id": data["id"], "type": data["type"], "payload": payload})
    return orjson.dumps({"errors": [error]})


def _accepted(request: Request) -> tuple[str, ...]:
    return _media_types(request.headers.get("accept", ""))


@lru_cache(maxsize=256)
def _media_types(header: str) -> tuple[str, ...]:
    """The media types an Accept header lists, remembered by header: a client sends the same one each time."""
    return tuple(part.split(";")[0].strip().lower() for part in header.split(",") if part.strip())


def _media_type(request: Request) -> str:
    """application/graphql-response+json when the client lists it (the spec's preferred type)."""
    return GRAPHQL_RESPONSE if GRAPHQL_RESPONSE in _accepted(request) else "application/json"


def _too_large(limit: int) -> Response:
    # A limit's refusal, coded as every other one (the JSON values' 413 was LIMIT_EXCEEDED, this BAD_REQUEST).
    return refusal(413, f"request body over {limit:,} bytes: send smaller batches", code=LIMIT_EXCEEDED)


def _refusal(request: Request, max_body: int) -> Response | None:
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > max_body:
        return _too_large(max_body)
    accepted = _accepted(request)
    if accepted and not any(media in ACCEPTABLE for media in accepted):
        return refusal(406, f"cannot answer as {request.headers['accept']}: ask for {GRAPHQL_RESPONSE} or "
                       "application/json")  # fmt: skip
    return None
