"""Git object identity: ids are SHA-1 over a typed header and the content, exactly as git."""

import hashlib
import re
from typing import NamedTuple

from govc.errors import InvalidArgument

BLOB = "blob"
TREE = "tree"
COMMIT = "commit"
TAG = "tag"

EMPTY_BLOB_ID = "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"

_HEX40 = re.compile(r"[0-9a-f]{40}")


def object_header(kind: str, size: int) -> bytes:
    return f"{kind} {size}\0".encode("ascii")


def object_id(kind: str, content: bytes | memoryview) -> str:
    """The git id of an object of `kind` with `content` (40 lowercase hex)."""
    h = hashlib.sha1(object_header(kind, len(content)))
    h.update(content)
    return h.hexdigest()


def blob_id(content: bytes | memoryview) -> str:
    return object_id(BLOB, content)


def validate_object_id(value: str, field: str = "hash") -> bytes:
    """Check a full 40-hex id and return its 20 raw bytes."""
    if not value:
        raise InvalidArgument(f"{field} is required")
    if not _HEX40.fullmatch(value):
        raise InvalidArgument(f"{field} must be 40 lowercase hex characters, got {value!r:.60}")
    return bytes.fromhex(value)


# ---- trees ----

FILE_MODE = 0o100644  # the mode of every file govc writes (modes of imported files are kept)
DIR_MODE = "40000"  # a subdirectory's mode as a tree entry spells it


def _tree_sort_key(entry: tuple[str, str, bytes]) -> bytes:
    # git compares names as bytes, a directory as if its name ended with "/".
    mode, name, _ = entry
    raw = name.encode()
    return raw + b"/" if mode == DIR_MODE else raw


def encode_tree(entries: list[tuple[str, str, bytes]]) -> bytes:
    """A git tree from (mode, name, 20-byte id) entries, in git's order."""
    return b"".join(
        mode.encode() + b" " + name.encode() + b"\0" + oid
        for mode, name, oid in sorted(entries, key=_tree_sort_key)
    )


TreeEntry = tuple[str, str, bytes]  # (mode, name, 20-byte id)


def decode_tree(data: bytes) -> tuple[TreeEntry, ...]:
    entries = []
    pos = 0
    while pos < len(data):
        space = data.index(b" ", pos)
        nul = data.index(b"\0", space)
        mode = data[pos:space].decode()
        name = data[space + 1 : nul].decode()
        entries.append((mode, name, data[nul + 1 : nul + 21]))
        pos = nul + 21
    return tuple(entries)


# ---- commits ----
#
# Decoded commits and trees are cached by the thousand (govc.core.objects). They are tuples of
# strings and ints only, which the garbage collector stops tracking: a cache of dataclasses would
# be walked by every full collection, pausing every thread, the event loop's included, for tens
# of milliseconds.


class Signature(NamedTuple):
    name: str
    email: str
    time: int  # unix seconds
    offset: str = "+0000"

    def encode(self) -> str:
        return f"{self.name} <{self.email}> {self.time} {self.offset}"

    @property
    def identity(self) -> str:
        return f"{self.name} <{self.email}>" if self.email else self.name

    @classmethod
    def decode(cls, line: str) -> "Signature":
        ident, _, rest = line.rpartition(">")
        name, _, email = ident.partition("<")
        time_str, _, offset = rest.strip().partition(" ")
        return cls(name.strip(), email.strip(), int(time_str), offset or "+0000")


class Commit(NamedTuple):
    tree: str
    parents: tuple[str, ...]
    author: Signature
    committer: Signature
    message: str  # as stored: normalized, ending with a newline

    def encode(self) -> bytes:
        lines = [f"tree {self.tree}"]
        lines += [f"parent {p}" for p in self.parents]
        lines.append(f"author {self.author.encode()}")
        lines.append(f"committer {self.committer.encode()}")
        return ("\n".join(lines) + "\n\n" + self.message).encode()

    @classmethod
    def decode(cls, data: bytes) -> "Commit":
        text = data.decode()
        header, _, message = text.partition("\n\n")
        tree = ""
        parents: list[str] = []
        author = committer = None
        for line in header.split("\n"):
            key, _, value = line.partition(" ")
            if key == "tree":
                tree = value
            elif key == "parent":
                parents.append(value)
            elif key == "author":
                author = Signature.decode(value)
            elif key == "committer":
                committer = Signature.decode(value)
        if author is None or committer is None:
            raise ValueError("commit without author or committer")
        return cls(tree, tuple(parents), author, committer, message)

    @property
    def summary(self) -> str:
        return self.message.split("\n", 1)[0]


class Tag(NamedTuple):
    """An annotated tag object, as `git tag -a` writes it."""

    object: str  # the tagged object's id
    kind: str  # its kind (commit, tree, blob or tag)
    name: str
    tagger: Signature | None  # None only in old imported tags
    message: str  # as stored: cleaned, ending with a newline

    def encode(self) -> bytes:
        lines = [f"object {self.object}", f"type {self.kind}", f"tag {self.name}"]
        if self.tagger is not None:
            lines.append(f"tagger {self.tagger.encode()}")
        return ("\n".join(lines) + "\n\n" + self.message).encode()

    @classmethod
    def decode(cls, data: bytes) -> "Tag":
        header, _, message = data.decode(errors="replace").partition("\n\n")
        fields: dict[str, str] = {}
        for line in header.split("\n"):
            key, _, value = line.partition(" ")
            fields.setdefault(key, value)
        tagger = fields.get("tagger")
        return cls(
            fields.get("object", ""),
            fields.get("type", ""),
            fields.get("tag", ""),
            Signature.decode(tagger) if tagger else None,
            message,
        )


# What git counts as whitespace when it cleans a message: not \v, \f or Unicode spaces.
GIT_SPACE = " \t\r\n"


def clean_message(message: str, field: str = "message") -> str:
    """git's default message cleanup: trailing spaces and outer blank lines go, one final \\n.
    A NUL is refused: git's fsck rejects a commit that holds one."""
    if "\0" in message:
        raise InvalidArgument(f"{field} must not contain a NUL character")
    lines = [line.rstrip(GIT_SPACE) for line in message.split("\n")]
    cleaned: list[str] = []
    for line in lines:
        if not line and (not cleaned or not cleaned[-1]):
            continue  # leading blank lines and runs of blank lines
        cleaned.append(line)
    while cleaned and not cleaned[-1]:
        cleaned.pop()
    return "\n".join(cleaned) + "\n" if cleaned else ""


def require_message(message: str, field: str = "message") -> str:
    """`message` cleaned as git cleans it; InvalidArgument when nothing is left."""
    cleaned = clean_message(message, field)
    if not cleaned:
        raise InvalidArgument(f"{field} is required (and must not be only whitespace)")
    return cleaned


_AUTHOR = re.compile(r"\s*([^<>]*?)\s*<([^<>]*)>\s*")


def parse_author(
    value: str, default_name: str, default_email: str, field: str = "author"
) -> tuple[str, str]:
    """`Name <email>` or a bare name (email then empty); empty means the default identity."""
    if not value.strip():
        return default_name, default_email
    match = _AUTHOR.fullmatch(value)
    if match:
        name, email = match.group(1), match.group(2).strip()
        if not name:
            raise InvalidArgument(f"{field} {value!r:.80} has no name")
        return name, email
    if any(c in value for c in "<>\n\0"):
        raise InvalidArgument(f"{field} {value!r:.80} must be 'Name <email>' or a bare name")
    return value.strip(), ""
