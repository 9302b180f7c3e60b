"""What a field counts for in a document's cost beyond 1 (graphql_schema/document_shape.py).

A paged field multiplies what it selects by its page (page_arguments.py). Lists without a page
counted as one item, so a document within the cost limit could select every segment's members'
memberships' segments' members: 2.6 s of CPU and an 18 MB answer for a cost of ~7,400 with 15
segments, all the while pushed to each subscriber of the same document. They count as the most
items they usually hold. `Query.segments` stays at one: the segments are defined by the
business's own admins, and `segments { members(first: 100) { … interactions(first: 10) } }` is
what a dashboard asks. A field whose resolver costs far more than reading a value counts as its
weight: `recommendations` scores the catalogue for its profile (~6 ms), so 500 of them in one
`segmentHistory` took 2.7 s for a cost of ~2,000.
"""

from __future__ import annotations

# (type, field) -> the items counted for an unpaged list of objects.
UNPAGED_ITEMS: dict[tuple[str, str], int] = {
    ("Profile", "segmentMemberships"): 20,
    ("Profile", "mergeHistory"): 10,
    ("Profile", "mergeRefusals"): 10,
    ("Profile", "identifiers"): 10,
    ("Profile", "addresses"): 5,
    ("Profile", "consents"): 5,
    ("UnmergeResult", "profiles"): 5,
}

# (type, field) -> what one resolution of the field counts for, in plain fields.
WEIGHTS: dict[tuple[str, str], int] = {
    ("Profile", "recommendations"): 25,
}


def items_counted(parent: str, field: str) -> int:
    """How many items an unpaged list field counts for (1 for any other field)."""
    return UNPAGED_ITEMS.get((parent, field), 1)


def weight(parent: str, field: str) -> int:
    return WEIGHTS.get((parent, field), 1)
