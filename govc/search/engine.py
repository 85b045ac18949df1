"""Running a full-text search: the index for ranking, the file times beside it, storage for the
text of highlights and for `include_content`."""

import threading
from dataclasses import dataclass, field
from typing import NamedTuple

import tantivy

from govc.core.cache import LruCache
from govc.core.registry import Registry
from govc.core.versioncontrol import VersionControl
from govc.errors import NotFound
from govc.search import fulltext
from govc.search.fulltext import Hit
from govc.search.indexer import Indexer
from govc.storage import Storage, Txn

# Highlights need a hit's text: its blob decompressed and decoded. Texts are kept by blob id
# (content-addressed: never stale), the small ones only, so a page shown again costs no reads.
TEXTS_KEPT = 256
TEXT_KEPT_MAX_BYTES = 64 * 1024


@dataclass(frozen=True)
class SearchSpec:
    """A validated search: what to match, how to filter, order and page it."""

    repo_id: str
    query: str
    extensions: list[str] = field(default_factory=list)  # lower case, no dot
    max_size: int = 0  # 0: no limit
    min_score: float = 0.0
    modified_since_us: int | None = None  # aggregation's time_range (FullTextSearch: None)
    sort: str = "score"
    limit: int = 10
    offset: int = 0
    include_content: bool = False
    highlight_length: int = 0  # 0: no highlights


class Found(NamedTuple):
    hit: Hit
    content: bytes | None
    highlights: list[str]


class SearchEngine:
    def __init__(
        self,
        storage: Storage,
        repositories: Registry,
        vc: VersionControl,
        indexer: Indexer,
    ) -> None:
        self._storage = storage
        self._repositories = repositories
        self._vc = vc
        self._indexer = indexer
        self._texts: LruCache[bytes, str] = LruCache(TEXTS_KEPT)  # "": binary
        self._texts_lock = threading.Lock()

    def search(self, spec: SearchSpec) -> tuple[list[Found], int]:
        """One page of results and the total number of matches (blocking)."""
        searcher, user_query, query, times = self._prepare(spec)
        hits, total = fulltext.search_page(
            searcher, query, spec.sort, spec.limit, spec.offset, spec.min_score, times
        )
        return self.decorate(spec, searcher, user_query, hits), total

    def matches(self, spec: SearchSpec) -> tuple[list[Hit], "SearchContext"]:
        """Every match (score order), for aggregation (blocking)."""
        searcher, user_query, query, times = self._prepare(spec)
        hits = [
            fulltext.hit_of(searcher, address, score, times)
            for score, address in fulltext.scored_matches(searcher, query, spec.min_score)
        ]
        if spec.modified_since_us is not None:
            since = spec.modified_since_us
            hits = [hit for hit in hits if hit.modified_us >= since]
        return hits, SearchContext(searcher, user_query)

    def decorate(
        self,
        spec: SearchSpec,
        searcher: tantivy.Searcher,
        user_query: tantivy.Query,
        hits: list[Hit],
    ) -> list[Found]:
        """Highlights and content (the blob's bytes, from storage) of `hits`, as the request
        asks."""
        if not (spec.include_content or spec.highlight_length > 0):
            return [Found(hit, None, []) for hit in hits]
        highlights: list[list[str]] = [[] for _ in hits]
        contents: list[bytes | None] = [None for _ in hits]
        if hits and spec.include_content:
            with self._storage.read() as txn:
                contents = [self._blob(txn, spec.repo_id, hit) for hit in hits]
        if hits and self.wants_highlights(spec):
            highlighter = fulltext.Highlighter(
                searcher, user_query, spec.query, spec.highlight_length
            )
            texts = self._texts_of(spec.repo_id, hits, contents)
            highlights = [highlighter.snippets(text) for text in texts]
        return [Found(*found) for found in zip(hits, contents, highlights, strict=True)]

    @staticmethod
    def wants_highlights(spec: SearchSpec) -> bool:
        """Whether `spec` asks for highlights and its query could have any: a query without
        words on the text (`path:src`, `size:[0 TO 10]`) gets empty highlights without reading
        a text."""
        return spec.highlight_length > 0 and fulltext.highlightable(spec.query)

    def _blob(self, txn: Txn, repo_id: str, hit: Hit) -> bytes:
        return self._vc.objects.read_kind(txn, repo_id, bytes.fromhex(hit.hash), "blob")

    def _texts_of(self, repo_id: str, hits: list[Hit], contents: list[bytes | None]) -> list[str]:
        """The text of each hit ("" for a binary file), from the kept texts or storage."""
        oids = [bytes.fromhex(hit.hash) for hit in hits]
        with self._texts_lock:
            texts = [self._texts.get(oid) for oid in oids]
        missing = [i for i, text in enumerate(texts) if text is None]
        if missing:
            with self._storage.read() as txn:
                for i in missing:
                    content = contents[i]
                    if content is None:
                        content = self._blob(txn, repo_id, hits[i])
                    texts[i] = fulltext.file_text(content) or ""
            with self._texts_lock:
                for i in missing:
                    if hits[i].size <= TEXT_KEPT_MAX_BYTES:
                        self._texts.put(oids[i], texts[i] or "")
        return [text or "" for text in texts]

    def _prepare(
        self, spec: SearchSpec
    ) -> tuple[tantivy.Searcher, tantivy.Query, tantivy.Query, fulltext.Times]:
        """(searcher, the user's query, it with the filters, the repository's file times)."""
        with self._storage.read() as txn:
            if not self._repositories.exists(txn, spec.repo_id):
                raise NotFound(f"repository {spec.repo_id!r} not found")
        index = self._indexer.index
        user_query = fulltext.parse_query(index, spec.query)
        query = fulltext.filtered_query(user_query, spec.repo_id, spec.extensions, spec.max_size)
        times = self._indexer.file_times(spec.repo_id)
        return index.searcher(), user_query, query, times


@dataclass(frozen=True)
class SearchContext:
    """The searcher and parsed query behind a list of matches (to decorate samples later)."""

    searcher: tantivy.Searcher
    user_query: tantivy.Query
