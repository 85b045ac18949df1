"""Search over repository data, beside the core: the tantivy full-text index and the indexer
that keeps it in step with storage, aggregation of matches, read-only SQL, and the history
facts (what each commit changed, when each file last changed) that both derive from."""
