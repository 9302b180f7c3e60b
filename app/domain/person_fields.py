"""What a person's identity fields may hold, however they are written: `upsertProfile` (a CRM's
write, profile_input.py) and an `identify` event (events.py) set the same fields of the profile, so
they are held to the same bounds. Before, an event set what an upsert refused: a 3,000-character
name, a birth date in 2999 or on 30 February (the latter an internal error once written), a
5,000-character street, a language that is no language tag."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from app.domain.clock import now

# Not blank (spaces are stripped first): "   " replaced a customer's name with "" (null leaves a field
# as it is; nothing clears one).
PersonName = Annotated[str, Field(min_length=1, max_length=100)]
Gender = Annotated[str, Field(min_length=1, max_length=32)]
Language = Annotated[str, Field(pattern=r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$")]  # a BCP 47 tag: fr, pt-BR
Organisation = Annotated[str, Field(min_length=1, max_length=200)]  # a company, a job title
MOST_ADDRESSES = 20


def _upper(value: object) -> object:
    return value.upper() if isinstance(value, str) else value


Country = Annotated[str, BeforeValidator(_upper), Field(pattern=r"^[A-Z]{2}$")]  # ISO 3166-1 alpha-2: FR, fr


class AddressInput(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    kind: str | None = Field(default=None, max_length=32)
    street: str | None = Field(default=None, max_length=200)
    line2: str | None = Field(default=None, max_length=200)
    city: str | None = Field(default=None, max_length=100)
    postcode: str | None = Field(default=None, max_length=20)
    region: str | None = Field(default=None, max_length=100)
    country: Country | None = None

    @model_validator(mode="after")
    def _somewhere(self) -> AddressInput:
        """An address with no place in it (`{}`, a kind alone, blanks) was stored as one: it showed as
        a customer's address of nulls, and the matcher read it as an address to compare."""
        if not any((self.street, self.line2, self.city, self.postcode, self.region, self.country)):
            raise ValueError("an address needs at least one of street, line2, city, postcode, region, country")
        return self


def checked_birth_date(value: date) -> date:
    """ValueError (pydantic's field error) for a birth date no living customer has."""
    if value > now().date() or value.year < 1900:
        raise ValueError("birth date must be between 1900-01-01 and today")
    return value
