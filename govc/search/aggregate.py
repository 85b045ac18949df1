"""Grouping every match of a search and computing metrics over each group, exactly.

Group keys: `extension` (no dot; "" for none), `size_range` (0-1KB, 1KB-10KB, 10KB-100KB,
100KB-1MB, 1MB+; KB = 1024 bytes), `date_range` (age of the last change: last_hour, last_day,
last_week, last_month (30 days), last_year (365 days), older), `path` (the directory; "/" for the
top level) and `author` (author of the last commit that changed the file; "" while uncommitted).
Several keys give a composite value joined by "|".
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from govc.errors import InvalidArgument
from govc.search.fulltext import Hit

METRICS = (
    "count",
    "avg_score",
    "max_score",
    "min_score",
    "avg_size",
    "total_size",
    "min_size",
    "max_size",
)
TIME_RANGES = {
    "hour": 3600,
    "day": 86400,
    "week": 7 * 86400,
    "month": 30 * 86400,
    "year": 365 * 86400,
}
SAMPLES_PER_GROUP = 5

_KIB = 1024
_SIZE_BUCKETS = (
    (_KIB, "0-1KB"),
    (10 * _KIB, "1KB-10KB"),
    (100 * _KIB, "10KB-100KB"),
    (_KIB * _KIB, "100KB-1MB"),
)
_DATE_BUCKETS = (
    ("hour", "last_hour"),
    ("day", "last_day"),
    ("week", "last_week"),
    ("month", "last_month"),
    ("year", "last_year"),
)


def _size_range(size: int) -> str:
    for limit, label in _SIZE_BUCKETS:
        if size < limit:
            return label
    return "1MB+"


def _date_range(age_us: int) -> str:
    for unit, label in _DATE_BUCKETS:
        if age_us < TIME_RANGES[unit] * 1_000_000:
            return label
    return "older"


def _directory(path: str) -> str:
    return path.rsplit("/", 1)[0] if "/" in path else "/"


def key_function(key: str, now_us: int) -> Callable[[Hit], str]:
    functions: dict[str, Callable[[Hit], str]] = {
        "extension": lambda h: h.extension,
        "size_range": lambda h: _size_range(h.size),
        "date_range": lambda h: _date_range(now_us - h.modified_us),
        "path": lambda h: _directory(h.path),
        "author": lambda h: h.author,
    }
    if key not in functions:
        raise InvalidArgument(f"group_by: unknown key {key!r}; use one of {', '.join(functions)}")
    return functions[key]


def check_metrics(names: Sequence[str]) -> list[str]:
    """The metrics asked for (all of them when none are named)."""
    for name in names:
        if name not in METRICS:
            raise InvalidArgument(
                f"aggregations: unknown metric {name!r}; use one of {', '.join(METRICS)}"
            )
    return list(dict.fromkeys(names)) or list(METRICS)


def metrics(hits: Sequence[Hit], names: Sequence[str]) -> dict[str, float]:
    if not hits:
        return {name: 0.0 for name in names}
    scores = [h.score for h in hits]
    sizes = [h.size for h in hits]
    values: dict[str, Callable[[], float]] = {
        "count": lambda: float(len(hits)),
        "avg_score": lambda: sum(scores) / len(scores),
        "max_score": lambda: max(scores),
        "min_score": lambda: min(scores),
        "avg_size": lambda: sum(sizes) / len(sizes),
        "total_size": lambda: float(sum(sizes)),
        "min_size": lambda: float(min(sizes)),
        "max_size": lambda: float(max(sizes)),
    }
    return {name: values[name]() for name in names}


@dataclass(frozen=True)
class Group:
    value: str
    hits: list[Hit]  # score order
    metrics: dict[str, float]

    @property
    def samples(self) -> list[Hit]:
        return self.hits[:SAMPLES_PER_GROUP]


def group(
    hits: Sequence[Hit], keys: Sequence[str], metric_names: Sequence[str], now_us: int
) -> list[Group]:
    """Groups of `hits` (in score order) by the composite value of `keys`, sorted by count
    (descending) then value."""
    functions = [key_function(key, now_us) for key in keys]
    groups: dict[str, list[Hit]] = {}
    for hit in hits:
        value = "|".join(f(hit) for f in functions)
        groups.setdefault(value, []).append(hit)
    return [
        Group(value, members, metrics(members, metric_names))
        for value, members in sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0]))
    ]
