"""The offline GraphiQL playground: the vendored browser assets and the HTML page that loads them.

This module owns the playground page only. The server decides where it appears: it mounts
``STATIC_DIR`` with Starlette's ``StaticFiles`` at ``ASSETS_PATH`` and answers a browser's
``GET <graphql_path>`` (``Accept: text/html``) with ``playground_html(graphql_path)``.
Every script and stylesheet comes from ``STATIC_DIR`` (GraphiQL 3, React 18, graphql-ws; versions
and licences in ``static/VERSIONS.txt``, re-downloaded by ``vendor_assets.sh``), so the page works
on a machine with no internet access. Queries and mutations go over HTTP POST to ``graphql_path``
with the Headers tab as request headers; subscriptions use the ``graphql-transport-ws`` WebSocket
protocol on the same path with the Headers tab as the ``connection_init`` payload (where the server
reads ``{"Authorization": "Bearer <key>"}``). GraphiQL keeps the Headers tab in localStorage across
reloads (``shouldPersistHeaders``; its settings dialog turns that off).
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import re
from pathlib import Path
from typing import Final

__all__ = ["ASSETS_PATH", "DEFAULT_QUERY", "STATIC_DIR", "content_security_policy", "playground_html"]

STATIC_DIR: Final[Path] = Path(__file__).resolve().parent / "static"
"""The vendored assets; shipped as package data (``playground/static/*``, no sub-folders)."""

ASSETS_PATH: Final = "/playground-assets"
"""URL prefix where the server mounts ``STATIC_DIR`` (``Mount(ASSETS_PATH, StaticFiles(...))``)."""

DEFAULT_QUERY: Final = """\
# Welcome to the CDP playground.
# Every call needs an API key: open Headers
# below and paste
#   {"Authorization": "Bearer <key>"}
# (`make run` prints a development key and
# keeps it in data/dev-api-key). The docs and
# autocomplete follow the key. Then try:
query Customer {
  profileByIdentifier(type: "email", value: "emma.martin@example.com") {
    id firstName lastName
    stats { orders revenue lastSeenAt }
    interactions(first: 5) { edges { node { type channel timestamp } } }
  }
}
"""
"""The text a fresh query editor starts with (GraphiQL keeps the user's own tabs after that)."""

_STILL_LOADING: Final = """\
# The demo data is still loading ({progress}):
# queries answer with what is in so far.
# GET /readyz says 200 "ready" once it is all in;
# the server log shows the progress too.
"""

_STYLESHEETS: Final = ("graphiql.min.css",)
# Order matters: GraphiQL's UMD build reads the React and ReactDOM globals when it loads.
_SCRIPTS: Final = (
    "react.production.min.js",
    "react-dom.production.min.js",
    "graphql-ws.min.js",
    "graphiql.min.js",
)

_PAGE: Final = """\
<!doctype html>
<html lang="en">
  <head>
    <meta charset="utf-8">
    <meta name="viewport" content="width=device-width, initial-scale=1">
    <meta name="robots" content="noindex">
    <title>{title}</title>
    <link rel="icon" href="data:,">
{stylesheets}
    <style>
      html, body {{ height: 100%; margin: 0; overflow: hidden; }}
      #graphiql {{ height: 100vh; }}
    </style>
  </head>
  <body>
    <div id="graphiql">
      <noscript>The GraphQL playground needs JavaScript.</noscript>
    </div>
{scripts}
    <script>
      (function () {{
        "use strict";
        var graphqlPath = {graphql_path};
        var wsScheme = window.location.protocol === "https:" ? "wss:" : "ws:";
        var subscriptionUrl = wsScheme + "//" + window.location.host + graphqlPath;
        var httpFetcher = GraphiQL.createFetcher({{ url: graphqlPath }});

        function isCloseEvent(value) {{
          return !!value && typeof value === "object" && "code" in value && "reason" in value;
        }}

        // One graphql-ws client per content of the Headers tab: the headers in force when a
        // subscription starts are its connection_init payload (the server reads the key from
        // "Authorization"), so a key typed or changed after the page loaded is the one used.
        // Clients connect lazily and close their socket when their last subscription ends.
        var clients = new Map();

        function clientFor(headers) {{
          var params = JSON.stringify(headers);
          var entry = clients.get(params);
          if (entry) {{
            return entry;
          }}
          clients.forEach(function (other, otherParams) {{
            if (other.active === 0) {{
              other.client.dispose();
              clients.delete(otherParams);
            }}
          }});
          entry = {{
            active: 0,
            client: graphqlWs.createClient({{
              url: subscriptionUrl,
              connectionParams: headers,
              // A refused key (4403 Forbidden) stays refused: say so now, not after 5 retries.
              shouldRetry: function (event) {{
                return isCloseEvent(event) && event.code !== 4403;
              }}
            }})
          }};
          clients.set(params, entry);
          return entry;
        }}

        function hasAuthorization(headers) {{
          return Object.keys(headers).some(function (name) {{
            return name.toLowerCase() === "authorization";
          }});
        }}

        function describe(error, headers) {{
          if (Array.isArray(error) || error instanceof Error) {{
            return error;
          }}
          if (isCloseEvent(error)) {{
            var message = ("Socket closed with event " + error.code + " " + (error.reason || "")).trim();
            if (error.code === 4403) {{
              message += hasAuthorization(headers)
                ? ": the server refused the key in the Headers tab"
                : ': put {{"Authorization": "Bearer <key>"}} in the Headers tab';
            }}
            return {{ message: message }};
          }}
          return {{ message: String(error) }};
        }}

        function isSubscription(documentAST, operationName) {{
          var operations = (documentAST ? documentAST.definitions : []).filter(function (definition) {{
            return definition.kind === "OperationDefinition";
          }});
          var chosen = operationName
            ? operations.filter(function (operation) {{
                return !!operation.name && operation.name.value === operationName;
              }})[0]
            : operations[0];
          return !!chosen && chosen.operation === "subscription";
        }}

        function subscribe(params, headers) {{
          return {{
            subscribe: function (observer) {{
              var entry = clientFor(headers);
              var running = true;
              entry.active += 1;
              function ended() {{
                if (running) {{
                  running = false;
                  entry.active -= 1;
                }}
              }}
              var dispose = entry.client.subscribe(params, {{
                next: function (value) {{
                  observer.next(value);
                }},
                error: function (error) {{
                  ended();
                  observer.error(describe(error, headers));
                }},
                complete: function () {{
                  ended();
                  observer.complete();
                }}
              }});
              return {{
                unsubscribe: function () {{
                  ended();
                  dispose();
                }}
              }};
            }}
          }};
        }}

        // Queries and mutations go over HTTP with the Headers tab as request headers;
        // subscriptions over WebSocket with the Headers tab as connection_init payload.
        function fetcher(params, options) {{
          var headers = (options && options.headers) || {{}};
          if (isSubscription(options && options.documentAST, params.operationName)) {{
            return subscribe(params, headers);
          }}
          return httpFetcher(params, options);
        }}

        var root = ReactDOM.createRoot(document.getElementById("graphiql"));
        function render(currentFetcher) {{
          root.render(React.createElement(GraphiQL, {{
            fetcher: currentFetcher,
            defaultQuery: {default_query},
            // The Headers tab (the API key) is kept in localStorage across reloads; GraphiQL's
            // settings dialog turns this off.
            shouldPersistHeaders: true,
            onEditHeaders: headersEdited
          }}));
        }}

        // The schema (docs, autocomplete, error marks) is asked for when the page opens, before a
        // key is in the Headers tab: refused then, it stayed "Error fetching schema" until the
        // re-fetch button or a reload. Once the tab holds JSON again (a key pasted or changed), a
        // new fetcher is given, and GraphiQL asks for the schema again with those headers.
        var headersAsked = null;
        var headersTimer = null;
        function headersEdited(text) {{
          clearTimeout(headersTimer);
          headersTimer = setTimeout(function () {{
            if (text === headersAsked) {{
              return;
            }}
            try {{
              JSON.parse(text || "{{}}");
            }} catch (notYet) {{
              return;
            }}
            headersAsked = text;
            render(function (params, options) {{
              return fetcher(params, options);
            }});
          }}, 500);
        }}
        render(fetcher);
      }})();
    </script>
  </body>
</html>
"""


_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)


def content_security_policy(page: str) -> str:
    """What `page` (from `playground_html`) may run and reach: its own scripts (the inline one by its
    hash, as the page was written for this request), requests to its own origin only (HTTP and the
    subscriptions' WebSocket), no plugin, frame, form or base URL. The key a developer pastes stays
    in the page's storage: a script injected by any means could otherwise read it and send it
    anywhere. Styles may be inline: GraphiQL's editors set style attributes."""
    hashes = " ".join(
        f"'sha256-{base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()}'"
        for body in _INLINE_SCRIPT.findall(page)
    )
    return "; ".join(
        (
            "default-src 'none'",
            f"script-src 'self' {hashes}".rstrip(),
            "style-src 'self' 'unsafe-inline'",
            "img-src 'self' data:",
            "font-src 'self' data:",
            "connect-src 'self'",
            "frame-ancestors 'none'",
            "base-uri 'none'",
            "form-action 'none'",
        )
    )


def _js_literal(value: str) -> str:
    """``value`` as a JavaScript string literal that is also safe inside an HTML ``<script>``."""
    return (
        json.dumps(value)
        .replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )


def playground_html(
    graphql_path: str = "/graphql", title: str = "CDP GraphQL playground", *, still_loading: str | None = None
) -> str:
    """Return the complete GraphiQL page for the endpoint at ``graphql_path`` on the page's origin.
    ``still_loading`` (how far the demo data got, while the server loads it) heads the default query,
    so that a newcomer who finds few customers knows why.

    HTTP requests go to ``graphql_path``; subscriptions go to ``ws://`` (``wss://`` on an https
    page) + the page's host + ``graphql_path``. The page loads its assets from ``ASSETS_PATH``.
    The Headers tab (``{"Authorization": "Bearer <key>"}``) goes with every request and, for a
    subscription, in ``connection_init``: the headers in force when the subscription starts.
    """
    if not graphql_path.startswith("/") or graphql_path.startswith("//"):
        raise ValueError(f"graphql_path must be an absolute path on this origin, got {graphql_path!r}")
    stylesheets = "\n".join(
        f'    <link rel="stylesheet" href="{html.escape(f"{ASSETS_PATH}/{name}")}">' for name in _STYLESHEETS
    )
    scripts = "\n".join(f'    <script src="{html.escape(f"{ASSETS_PATH}/{name}")}"></script>' for name in _SCRIPTS)
    return _PAGE.format(
        title=html.escape(title),
        stylesheets=stylesheets,
        scripts=scripts,
        graphql_path=_js_literal(graphql_path),
        default_query=_js_literal(
            DEFAULT_QUERY if still_loading is None else _STILL_LOADING.format(progress=still_loading) + DEFAULT_QUERY
        ),
    )
