"""Segments' condition language: one definition, validated once, compiled three ways.

Entry points (for the segment service and the GraphQL mutations):
- `catalogue.PathCatalogue(traits=..., event_properties=...)`: the paths a condition may name;
- `parser.parse_condition(input, catalogue)`: plain input -> validated tree, or `InvalidInput` naming
  the place (`condition.and[2].not.compare.path: ...`); `LimitExceeded` for size limits;
- `conditions`: the tree types and their shared semantics;
- `predicate.predicate(tree)(profile, activity, memberships, now=...)`: real-time evaluation;
- `dependencies.dependencies(tree)` / `dependencies.next_change(tree, activity, now=...)`: what a
  result depends on, and when time alone changes it;
- stores: `app.store.sqlite.segment_query.where_clause(tree, now=...)` and
  `app.store.mongo.segment_query.membership_pipeline(tree, now=...)` for batch membership.
"""
