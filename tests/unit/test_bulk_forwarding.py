"""What a serving process tells its bulk process about a request (app/bulk_process.py): where the
connection came from, which a client cannot forge, and which the bulk process's loopback-only rule
(CDP_AUTH=off) judges as the serving process would have."""

from __future__ import annotations

from typing import Any

from app.bulk_process import FORWARDED, ForwardedRequests, _request
from graphql_schema.loopback_only import LoopbackOnly


def _scope(client: tuple[str, int], server: tuple[str, int], headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    return {
        "type": "http",
        "method": "POST",
        "path": "/graphql",
        "raw_path": b"/graphql",
        "query_string": b"",
        "headers": headers,
        "client": client,
        "server": server,
    }


def test_the_forwarded_request_says_where_the_connection_came_from_and_not_what_the_client_claimed() -> None:
    claimed = [
        (b"host", b"localhost:8000"),
        (b"content-type", b"application/json"),
        (FORWARDED, b"127.0.0.1 1 127.0.0.1 8000"),  # a client's forgery
        (b"connection", b"keep-alive"),
        (b"transfer-encoding", b"chunked"),
        (b"content-length", b"999"),
    ]
    method, target, headers, body = _request(_scope(("10.1.2.3", 5000), ("10.1.2.4", 8000), claimed), b"{}")
    assert (method, target, body) == (b"POST", b"/graphql", b"{}")
    assert headers == [
        (b"host", b"localhost:8000"),
        (b"content-type", b"application/json"),
        (FORWARDED, b"10.1.2.3 5000 10.1.2.4 8000"),
    ]


async def _answer(scope: dict[str, Any]) -> tuple[int, list[dict[str, Any]]]:
    reached: list[dict[str, Any]] = []

    async def application(scope: Any, receive: Any, send: Any) -> None:
        reached.append(dict(scope))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    bulk_side = ForwardedRequests(LoopbackOnly(application))
    await bulk_side(scope, receive, send)
    return sent[0]["status"], reached


async def test_the_bulk_process_refuses_what_came_over_the_network_when_auth_is_off() -> None:
    over_the_socket = ("/tmp/cdp-bulk-x/bulk.sock", 0)
    from_network = _request(_scope(("10.1.2.3", 5000), ("10.1.2.4", 8000), [(b"host", b"localhost")]), b"")[2]
    status, reached = await _answer(_scope(over_the_socket, over_the_socket, from_network))
    assert (status, reached) == (403, [])

    from_here = _request(_scope(("127.0.0.1", 5000), ("127.0.0.1", 8000), [(b"host", b"localhost")]), b"")[2]
    status, reached = await _answer(_scope(over_the_socket, over_the_socket, from_here))
    assert status == 200
    assert (reached[0]["client"], reached[0]["server"]) == (("127.0.0.1", 5000), ("127.0.0.1", 8000))
