"""Write the schema's SDL to graphql_schema/schema.graphql (run: python -m graphql_schema.export)."""

from __future__ import annotations

from pathlib import Path

from graphql_schema.schema import schema

SDL_PATH = Path(__file__).with_name("schema.graphql")


def sdl() -> str:
    return schema.as_str() + "\n"


if __name__ == "__main__":
    SDL_PATH.write_text(sdl())
    print(f"wrote {SDL_PATH}")
