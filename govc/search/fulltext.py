"""The tantivy index of every repository's current files, and searching it.

One index per data dir. A document is one file of a repository's work tree (the current
branch's HEAD tree plus uncommitted changes). Fields, as the query language names them:

- `content`: the text in words, split at every non-alphanumeric character and lower-cased:
  `parse_args` gives `parse`, `args` (so the query `parse_args`, a phrase of the two, finds it);
  `parseArgs` stays whole as `parseargs`;
- `parts`: the text split into identifier parts as well: `parseArgs` and `HTTPServer2` give
  `parse`, `args` and `httpserver`, `2` (an upper-case run stays with its lower-case tail);
- `path`, `name`: the path and the file name, split like `parts` (`path:src`, `name:util`);
- `filepath`: the exact path (raw: `filepath:"src/a.py"`); `extension` (raw, no dot, lower case);
  `hash`; `size` (a fast field: `size:[0 TO 1000]`).

`extension` and `hash` hold lower-case values, and queries on them are case-insensitive
(`extension:PY`, `extension:decTest`): queries are parsed against a twin of the schema whose
tokenizer for those fields lower-cases (see `parse_query`). `filepath` stays exact (paths are
case-sensitive), as does `content_type` (indexed as the MIME table spells it).

Default fields for unprefixed terms: content, parts, name. Binary files (a NUL byte in their
first 8 KiB) and files over `MAX_CONTENT_BYTES` are indexed by path only. The text is not
stored in the index (storage has it: highlights and `include_content` read the blob), so a
document the search loads is a few short fields. When a file last changed and who changed it
are not in the index either (a commit changes them for every file it touches, and re-indexing
unchanged text for that would be wasted work): the indexer keeps them beside the index
(`FileTime`), and sorting by date or filtering by time uses those.
"""

import logging
import mimetypes
import os
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import tantivy

from govc.core.objects import file_extension, file_name
from govc.errors import InvalidArgument
from govc.search.history import FileTime

log = logging.getLogger(__name__)

FORMAT = 4  # bump when the schema or the tokenizers change: the index is then rebuilt
MAX_CONTENT_BYTES = 4 * 1024 * 1024
BINARY_SNIFF_BYTES = 8192
DEFAULT_FIELDS = ["content", "parts", "name"]
HIGHLIGHT_MARK = "**"

_PARTS = "parts"  # tokenizer: identifier parts
_FOLDED = "raw_folded"  # tokenizer: the whole value, lower-cased (queries only)
# Keyword fields whose indexed values are lower case: a query's values for them are folded
# to match (`make_document` lower-cases the extension; a hash is lower-case hex).
FOLDED_FIELDS = ("extension", "hash")


def _analyzers() -> dict[str, tantivy.TextAnalyzer]:
    # ASCII classes only: the regex tokenizer's cost grows with Unicode classes, and `content`
    # (the simple tokenizer) already holds every non-ASCII word.
    parts = (
        tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.regex(r"[A-Z]+[a-z]*|[a-z]+|[0-9]+"))
        .filter(tantivy.Filter.remove_long(40))
        .filter(tantivy.Filter.lowercase())
        .build()
    )
    folded = tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.raw()).filter(tantivy.Filter.lowercase())
    return {_PARTS: parts, _FOLDED: folded.build()}


def build_schema(for_queries: bool = False) -> tantivy.Schema:
    """The index's schema; `for_queries`: its twin for parsing queries, the same fields in the
    same order, the `FOLDED_FIELDS` lower-casing what a query says of them."""

    def keyword(name: str) -> str:
        return _FOLDED if for_queries and name in FOLDED_FIELDS else "raw"

    b = tantivy.SchemaBuilder()
    b.add_text_field("repo", tokenizer_name="raw", index_option="basic")
    b.add_text_field("key", tokenizer_name="raw", index_option="basic")  # repo + "/" + path
    b.add_text_field("filepath", stored=True, fast=True, tokenizer_name="raw", index_option="basic")
    b.add_text_field("path", tokenizer_name=_PARTS)
    b.add_text_field("name", tokenizer_name=_PARTS)
    b.add_text_field(
        "extension", stored=True, tokenizer_name=keyword("extension"), index_option="basic"
    )
    # simple tokenizer, words up to 40 chars, lower case
    b.add_text_field("content", tokenizer_name="default")
    b.add_text_field("parts", tokenizer_name=_PARTS)
    b.add_text_field("hash", stored=True, tokenizer_name=keyword("hash"), index_option="basic")
    b.add_text_field("content_type", stored=True, tokenizer_name="raw", index_option="basic")
    b.add_unsigned_field("size", stored=True, indexed=True, fast=True)
    return b.build()


SCHEMA = build_schema()
# An empty index in memory, only to parse queries with (tantivy's parser tokenizes a query's
# values with their field's tokenizer: on this twin of the schema the folded fields lower-case
# them). Its field ids are the real schema's, so what it parses runs on the real index.
_QUERY_PARSER = tantivy.Index(build_schema(for_queries=True))


def open_index(directory: str, reuse: bool) -> tuple[tantivy.Index, bool]:
    """The index in `directory`, its tokenizers registered, and whether it is the existing one.
    With `reuse` false, or when the existing index cannot be opened, it is recreated empty."""
    os.makedirs(directory, exist_ok=True)
    if reuse:
        try:
            index = tantivy.Index(SCHEMA, path=directory, reuse=True)
            _register(index)
            index.searcher()
            return index, True
        except (ValueError, OSError) as exc:
            log.warning("search index in %s cannot be opened (%s); rebuilding it", directory, exc)
    shutil.rmtree(directory, ignore_errors=True)
    os.makedirs(directory)
    index = tantivy.Index(SCHEMA, path=directory, reuse=False)
    _register(index)
    return index, False


def _register(index: tantivy.Index) -> None:
    for name, analyzer in _analyzers().items():
        index.register_tokenizer(name, analyzer)


_register(_QUERY_PARSER)


def repo_key(repo_id: str, path: str) -> str:
    return f"{repo_id}/{path}"


def file_text(content: bytes) -> str | None:
    """The text to index, or None for a binary or too large file."""
    if len(content) > MAX_CONTENT_BYTES or b"\0" in content[:BINARY_SNIFF_BYTES]:
        return None
    return content.decode("utf-8", errors="replace")


def content_type(path: str, text: str | None) -> str:
    guessed, _ = mimetypes.guess_type(path, strict=False)
    if guessed:
        return guessed
    return "application/octet-stream" if text is None else "text/plain"


@dataclass(frozen=True)
class FileDoc:
    """What the index holds about one file (the rest is derived from the path and content)."""

    hash: str
    size: int


def make_document(repo_id: str, path: str, doc: FileDoc, text: str | None) -> tantivy.Document:
    d = tantivy.Document()
    d.add_text("repo", repo_id)
    d.add_text("key", repo_key(repo_id, path))
    d.add_text("filepath", path)
    d.add_text("path", path)
    d.add_text("name", file_name(path))
    d.add_text("extension", file_extension(path).lower())
    d.add_text("hash", doc.hash)
    d.add_text("content_type", content_type(path, text))
    d.add_unsigned("size", doc.size)
    if text:
        d.add_text("content", text)
        d.add_text("parts", text)
    return d


# ---- searching ----


class Hit(NamedTuple):
    """One matching file. A tuple, not a dataclass: a page builds ten of these per search, and
    a frozen dataclass costs three times as much to make."""

    path: str
    hash: str
    size: int
    extension: str
    content_type: str
    score: float
    modified_us: int  # from the FileTime beside the index
    author: str  # "" while uncommitted


MAX_QUERY_NESTING = 100  # parentheses; tantivy's parser recurses, and overflows its stack


def parse_query(index: tantivy.Index, text: str) -> tantivy.Query:
    """The user's query in tantivy's query language, for `index` (of `SCHEMA`); an empty query
    matches every file. Values for the `FOLDED_FIELDS` are lower-cased, as they are indexed."""
    if not text.strip():
        return tantivy.Query.all_query()
    if text.count("(") > MAX_QUERY_NESTING and _nesting(text) > MAX_QUERY_NESTING:
        # A few thousand open parentheses (within the query size limit) crash the process
        # with a stack overflow in tantivy's parser: refuse them before it sees them.
        raise InvalidArgument(f"query: nested deeper than {MAX_QUERY_NESTING} parentheses")
    try:
        return _QUERY_PARSER.parse_query(text, DEFAULT_FIELDS)
    except ValueError as exc:
        raise InvalidArgument(f"query: {exc}") from None


def _nesting(text: str) -> int:
    """How deep the query's parentheses nest. Those in quoted phrases count too: tantivy's
    quoting (two kinds of quotes, escapes) is not worth mirroring for a guard, and a phrase
    nesting a hundred parentheses is no real search."""
    depth = deepest = 0
    for char in text:
        if char == "(":
            depth += 1
            deepest = max(deepest, depth)
        elif char == ")":
            depth = max(depth - 1, 0)
    return deepest


def filtered_query(
    user_query: tantivy.Query, repo_id: str, extensions: list[str], max_size: int
) -> tantivy.Query:
    """The user's query restricted to one repository and the filters. Filters score 0, so the
    score is the user query's own BM25 score."""
    filters = [tantivy.Query.term_query(SCHEMA, "repo", repo_id)]
    if extensions:
        filters.append(tantivy.Query.term_set_query(SCHEMA, "extension", extensions))
    if max_size > 0:
        filters.append(
            tantivy.Query.range_query(
                SCHEMA, "size", tantivy.FieldType.Unsigned, lower_bound=0, upper_bound=max_size
            )
        )
    clauses = [(tantivy.Occur.Must, user_query)]
    clauses += [(tantivy.Occur.Must, tantivy.Query.const_score_query(f, 0.0)) for f in filters]
    return tantivy.Query.boolean_query(clauses)


Times = Mapping[str, FileTime]  # path -> when it last changed, and who changed it


def hit_of(searcher: tantivy.Searcher, address: Any, score: float, times: Times) -> Hit:
    doc = searcher.doc(address)
    path = doc.get_first("filepath") or ""
    time = times.get(path)
    return Hit(
        path=path,
        hash=doc.get_first("hash") or "",
        size=doc.get_first("size") or 0,
        extension=doc.get_first("extension") or "",
        content_type=doc.get_first("content_type") or "",
        score=score,
        modified_us=time.modified_us if time else 0,
        author=(time.author or "") if time else "",
    )


def _search(searcher: tantivy.Searcher, query: tantivy.Query, **options: Any) -> Any:
    """`searcher.search`; a query tantivy can parse but not run (`path:*` asks whether a field
    that is not a fast field exists) is the caller's error."""
    try:
        return searcher.search(query, **options)
    except ValueError as exc:
        raise InvalidArgument(f"query: {exc}") from None


def _count(result: tantivy.SearchResult) -> int:
    count: int | None = result.count  # type: ignore[attr-defined]  # missing from the stubs
    return count or 0


def scored_matches(
    searcher: tantivy.Searcher, query: tantivy.Query, min_score: float
) -> list[tuple[float, Any]]:
    """(score, address) of every match scoring at least `min_score`, best first."""
    total = _count(_search(searcher, query, limit=1, count=True))
    if total == 0:
        return []
    hits = _search(searcher, query, limit=total, count=False).hits
    return [(score, address) for score, address in hits if score >= min_score]


SORTS = ("score", "path", "size", "date")


def search_page(
    searcher: tantivy.Searcher,
    query: tantivy.Query,
    sort: str,
    limit: int,
    offset: int,
    min_score: float,
    times: Times,
) -> tuple[list[Hit], int]:
    """One page of hits in `sort` order (score: best first, ties in index order; path: A to Z;
    size: largest first; date: newest first; ties then by path) and the total before paging."""
    if sort == "score" and min_score <= 0:
        if offset >= searcher.num_docs:
            # Past every document: tantivy would reserve room for offset + limit hits first.
            return [], _count(_search(searcher, query, limit=1, count=True))
        result = _search(searcher, query, limit=limit, offset=offset, count=True)
        return [hit_of(searcher, a, s, times) for s, a in result.hits], _count(result)
    matches = scored_matches(searcher, query, min_score)
    if sort == "score":
        page = matches[offset : offset + limit]
        return [hit_of(searcher, a, s, times) for s, a in page], len(matches)
    hits = [hit_of(searcher, a, s, times) for s, a in matches]
    if sort == "path":
        hits.sort(key=lambda h: h.path)
    elif sort == "size":
        hits.sort(key=lambda h: (-h.size, h.path))
    else:
        hits.sort(key=lambda h: (-h.modified_us, h.path))
    return hits[offset : offset + limit], len(hits)


# ---- highlights ----


class Highlighter:
    """Snippets of at most `length` characters around the best match in a file's text, matched
    terms marked `**term**`.

    tantivy's snippet generator tokenizes the whole text it is given; for big files that is
    most of a search's time. So it is given a window: the text around the first place where
    one of the query's words occurs (found by a plain case-insensitive search), wide enough
    for several candidate fragments. With no such place, the whole text.
    """

    def __init__(
        self,
        searcher: tantivy.Searcher,
        user_query: tantivy.Query,
        query_text: str,
        length: int,
    ) -> None:
        self._generators = []
        for name in ("content", "parts"):
            generator = tantivy.SnippetGenerator.create(searcher, user_query, SCHEMA, name)
            generator.set_max_num_chars(length)
            self._generators.append(generator)
        self._words = _query_words(query_text)
        self._length = length
        self._before = 2 * length
        self._after = max(8 * length, 2048)

    def snippets(self, text: str | None) -> list[str]:
        """The best fragment of a file's text (None for a binary file) for the query's words;
        failing that (a match on identifier parts only, as `args` in `parseArgs`), the best
        fragment for its parts."""
        if not text:
            return []
        window = self._window(text)
        # The window's first find may be inside a longer word (`thread` in `threading`): then
        # the whole text.
        for candidate in (window, text) if len(window) < len(text) else (text,):
            for generator, field_name in zip(self._generators, ("content", "parts"), strict=True):
                doc = tantivy.Document()
                doc.add_text(field_name, candidate)
                marked = _marked(generator.snippet_from_doc(doc), self._length)
                if marked is not None:
                    return [marked]
        return []

    def _window(self, text: str) -> str:
        folded = text.lower()
        if len(folded) != len(text):  # lower-casing moved offsets (rare scripts): no window
            return text
        found = [at for word in self._words if (at := folded.find(word)) >= 0]
        if not found:
            return text
        first = min(found)
        start, end = max(0, first - self._before), first + self._after
        # Whole words only: a word cut at an edge could be taken for a query word (`te` out of
        # `testing`). At the start the cut word is left out, unless the first find is in it:
        # then it is taken whole.
        if start > 0 and text[start - 1].isalnum() and text[start].isalnum():
            after = start
            while after < len(text) and text[after].isalnum():
                after += 1
            if after <= first:
                start = after
            else:
                while start > 0 and text[start - 1].isalnum():
                    start -= 1
        while first < end < len(text) and text[end - 1].isalnum() and text[end].isalnum():
            end -= 1
        return text[start:end]


def _query_words(query_text: str) -> list[str]:
    """The lower-cased words of the query's terms and phrases on the text fields."""
    try:
        tree = tantivy.parse_query(query_text)
    except ValueError:
        return []
    words: list[str] = []
    pending: list[Any] = [tree]  # a stack, not recursion: queries may nest thousands deep
    while pending:
        node = pending.pop()
        if isinstance(node, dict):
            if node.get("type") == "literal" and node.get("field_name") in (
                None,
                "content",
                "parts",
            ):
                words.extend(_WORD.findall(str(node.get("phrase", "")).lower()))
            pending.extend(node.values())
        elif isinstance(node, tuple) and len(node) == 2 and node[0] == "must_not":
            continue  # excluded words are not in the matches
        elif isinstance(node, (list, tuple)):
            pending.extend(node)
    return sorted(set(words))


_WORD = re.compile(r"[^\W_]+")


_TEXT_FIELDS = (None, "content", "parts")  # what highlights mark: unprefixed, content, parts


def highlightable(query_text: str) -> bool:
    """Whether the query has anything a highlight could mark in a file's text: a term, phrase
    or set of values on `content` or `parts` (or unprefixed) with a word character in it (or
    any non-ASCII character: tantivy's idea of one is wider). Without, `Highlighter` marks
    nothing in any file, and neither it nor the texts are worth making. Excluded terms count
    too (under a negated conjunction they may still be in the matches); so does a query that
    does not parse here, to be safe."""
    if query_text.count("(") > MAX_QUERY_NESTING and _nesting(query_text) > MAX_QUERY_NESTING:
        return True  # (`parse_query` refuses it: tantivy's parser would overflow its stack)
    try:
        tree = tantivy.parse_query(query_text)
    except ValueError:
        return True
    pending: list[Any] = [tree]  # a stack, not recursion: queries may nest thousands deep
    while pending:
        node = pending.pop()
        if isinstance(node, dict):
            kind = node.get("type")
            if kind == "literal":
                if node.get("field_name") in _TEXT_FIELDS and _has_word(node.get("phrase")):
                    return True
            elif kind == "set":
                if node.get("field") in _TEXT_FIELDS and any(
                    _has_word(e) for e in node.get("elements") or ()
                ):
                    return True
            elif kind in ("bool", "boost"):
                pending.extend(node.values())
            elif kind not in ("all", "range"):  # (a range has no terms to mark)
                return True  # a kind this does not know: it may have terms
        elif isinstance(node, (list, tuple)):
            pending.extend(node)
    return False


def _has_word(value: object) -> bool:
    return any(char.isalnum() or not char.isascii() for char in str(value or ""))


def _marked(snippet: tantivy.Snippet, length: int) -> str | None:
    """The fragment, at most `length` characters besides the marks, with every highlighted range
    marked `**…**`; None when nothing in it is."""
    fragment = snippet.fragment()
    ranges = sorted((r.start, r.end) for r in snippet.highlighted())
    if not fragment or not ranges:
        return None
    encoded = fragment.encode()  # tantivy's ranges are byte offsets
    if len(fragment) > length:
        # tantivy keeps a matched word whole even when it is longer than the limit: keep
        # `length` characters from the first match.
        first = ranges[0][0]
        encoded = encoded[first:].decode(errors="ignore")[:length].encode()
        ranges = [
            (max(start - first, 0), min(end - first, len(encoded)))
            for start, end in ranges
            if start - first < len(encoded)
        ]
    out: list[bytes] = []
    position = 0
    mark = HIGHLIGHT_MARK.encode()
    for start, end in ranges:
        out += [encoded[position:start], mark, encoded[start:end], mark]
        position = end
    out.append(encoded[position:])
    return b"".join(out).decode(errors="replace")
