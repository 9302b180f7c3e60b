"""The bare-HTTP floor: a Starlette app that returns a constant small JSON, served by uvicorn with the
same settings `python -m app serve` uses (uvicorn.run defaults: loop/http "auto", lifespan on).

    python -m bench.bare_app --host 127.0.0.1 --port 8001 --log-level warning
"""

from __future__ import annotations

import argparse

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

CONSTANT = {"data": {"ok": True, "id": "0123456789abcdef0123456789abcdef"}}


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def constant(request: Request) -> Response:
    await request.body()  # read the request like the GraphQL endpoint does, then ignore it
    return JSONResponse(CONSTANT)


app = Starlette(routes=[Route("/healthz", healthz), Route("/json", constant, methods=["GET", "POST"])])


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args()
    if args.host != "127.0.0.1":
        parser.error("the benchmark servers listen on 127.0.0.1 only")
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, lifespan="on")


if __name__ == "__main__":
    main()
