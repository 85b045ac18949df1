"""Version control of repositories: git's formats and ids, refs, work tree and index, commits,
branches, merges, revisions, and the registry of repositories. Pure synchronous Python over a
typed storage transaction (`govc.storage.Txn`); it names no LMDB database or key."""
