"""Search over repository data: read-only SQL (more to come: full-text search, aggregation)."""
