from __future__ import annotations

from graphql_schema.export import SDL_PATH, sdl


def test_exported_sdl_matches_the_code() -> None:
    assert SDL_PATH.read_text() == sdl(), "schema changed: run `python -m graphql_schema.export` and commit it"


def test_contract_names_from_the_product_brief_exist() -> None:
    text = sdl()
    for name in [
        "profile(id:",
        "profileByIdentifier(",
        "profiles(",
        "ingestEvents(",
        "upsertProfile(",
        "interactions(",
    ]:
        assert name in text
