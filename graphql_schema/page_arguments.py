"""Page sizes (`first`, `last`): the most each paged field may be asked for, the page a connection
gives when neither is asked for, and the refusal of a page below 1 or past the most, as
`BAD_USER_INPUT` naming the argument.

A page is checked before anything executes: written in the document it is checked with the document
(graphql_schema/limits.py), given as a variable it is checked once the variables are coerced
(graphql_schema/execution.py). The services check again (check_page_size); this is what keeps a
negative or huge page out of the cost estimate, where it once cancelled the cost of the rest.
"""

from __future__ import annotations

from graphql import ArgumentNode, GraphQLError

from app.services.match_candidates import MAX_CANDIDATES
from app.services.recommendations import MAX_RECOMMENDATIONS

BAD_USER_INPUT = "BAD_USER_INPUT"
PAGE_ARGUMENTS = ("first", "last")
# A literal with more digits than this is out of every range: it is never converted (Python refuses
# to convert more than 4,300 digits, and a long one costs time before that).
_MOST_DIGITS = 9
# The field's maximum is the server's page limit (Settings.max_page_size).
PAGE_LIMIT = 0
# Query.segmentHistory says "at most 500" in its description; its resolver checks this number too.
SEGMENT_HISTORY_MAX = 500

# A connection's page when neither `first` nor `last` is given (both default to null in the schema).
PROFILES_PAGE = 20
INTERACTIONS_PAGE = 10
CONSENT_HISTORY_PAGE = 20
DEFAULT_PAGES: dict[tuple[str, str], int] = {
    ("Query", "profiles"): PROFILES_PAGE,
    ("Segment", "members"): PROFILES_PAGE,
    ("Profile", "interactions"): INTERACTIONS_PAGE,
    ("Query", "mergeCandidatePairs"): PROFILES_PAGE,
    ("Profile", "consentHistory"): CONSENT_HISTORY_PAGE,
}

MAXIMA: dict[tuple[str, str, str], int] = {
    ("Query", "profiles", "first"): PAGE_LIMIT,
    ("Query", "profiles", "last"): PAGE_LIMIT,
    ("Segment", "members", "first"): PAGE_LIMIT,
    ("Segment", "members", "last"): PAGE_LIMIT,
    ("Profile", "interactions", "first"): PAGE_LIMIT,
    ("Profile", "interactions", "last"): PAGE_LIMIT,
    ("Query", "mergeCandidates", "first"): MAX_CANDIDATES,
    ("Query", "mergeCandidatePairs", "first"): PAGE_LIMIT,
    ("Query", "mergeCandidatePairs", "last"): PAGE_LIMIT,
    ("Query", "recommendations", "first"): MAX_RECOMMENDATIONS,
    ("Profile", "recommendations", "first"): MAX_RECOMMENDATIONS,
    ("Query", "segmentHistory", "last"): SEGMENT_HISTORY_MAX,
    ("Profile", "consentHistory", "last"): PAGE_LIMIT,
}


def page_maximum(type_name: str, field_name: str, argument: str, *, page_limit: int) -> int | None:
    """The largest page `type_name.field_name(argument)` may ask for; None when it is not a paged field
    (a test fails when a paged field of the schema is missing from MAXIMA)."""
    found = MAXIMA.get((type_name, field_name, argument))
    if found is None:
        return None
    return page_limit if found == PAGE_LIMIT else found


def usual_page(type_name: str, field_name: str, default: object, maximum: int) -> int:
    """The page a paged field returns when the document gives none: its argument's default, else the
    connection's default page, else its maximum."""
    if isinstance(default, int) and 1 <= default <= maximum:
        return default
    return min(DEFAULT_PAGES.get((type_name, field_name), maximum), maximum)


def literal_page(digits: str) -> int | None:
    """The value of an Int literal, or None when it has too many digits to be any page."""
    return None if len(digits.lstrip("-")) > _MOST_DIGITS else int(digits)


def page_refusal(argument: ArgumentNode, maximum: int, value: int | None, *, digits: str = "") -> GraphQLError | None:
    """BAD_USER_INPUT when `value` (None: `digits` too long to be one) is not a page of 1 to `maximum`."""
    if value is not None and 1 <= value <= maximum:
        return None
    name = argument.name.value
    shown = str(value) if value is not None else f"a {len(digits.lstrip('-')):,}-digit number"
    return GraphQLError(
        f"{name} must be between 1 and {maximum}, got {shown}",
        argument,
        extensions={"code": BAD_USER_INPUT, "field": name},
    )
