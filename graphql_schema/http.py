"""GraphQL over HTTP and WebSocket, and the offline playground for browsers."""

from __future__ import annotations

from collections.abc import Callable

import orjson
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.types.unset import UNSET, UnsetType

from app.bootstrap import Services
from app.settings import Settings
from graphql_schema.auth import connection_credentials, principal_for
from graphql_schema.context import Context
from graphql_schema.playground import playground_html
from graphql_schema.schema import schema


class GraphQLApp(GraphQL[Context, None]):
    def __init__(self, services: Callable[[], Services], settings: Settings) -> None:
        super().__init__(schema, graphql_ide="graphiql", allow_queries_via_get=True)
        self._services = services

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
        unset: UnsetType = UNSET
        return unset

    async def render_graphql_ide(self, request: Request) -> HTMLResponse:
        return HTMLResponse(playground_html(request.url.path))

    def encode_json(self, data: object) -> str:  # orjson: several times faster on large profiles
        return orjson.dumps(data).decode()
