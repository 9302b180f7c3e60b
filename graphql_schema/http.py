"""GraphQL over HTTP and WebSocket, and the offline playground for browsers."""

from __future__ import annotations

from collections.abc import Callable

import orjson
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL

from app.bootstrap import Services
from app.settings import Settings
from graphql_schema.context import Context
from graphql_schema.playground import playground_html
from graphql_schema.schema import schema


class GraphQLApp(GraphQL[Context, None]):
    def __init__(self, services: Callable[[], Services], settings: Settings) -> None:
        super().__init__(schema, graphql_ide="graphiql", allow_queries_via_get=True)
        self._services = services

    async def get_context(self, request: Request | WebSocket, response: Response | WebSocket) -> Context:
        return Context(services=self._services(), request=request, response=response)

    async def render_graphql_ide(self, request: Request) -> HTMLResponse:
        return HTMLResponse(playground_html(request.url.path))

    def encode_json(self, data: object) -> str:  # orjson: several times faster on large profiles
        return orjson.dumps(data).decode()
