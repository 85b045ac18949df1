"""Validation of names that arrive from clients: repository ids (more rules join later)."""

import re

from govc.errors import InvalidArgument

_REPO_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def validate_repo_id(value: str, field: str = "id") -> str:
    if not value:
        raise InvalidArgument(f"{field} is required")
    if not _REPO_ID.fullmatch(value):
        raise InvalidArgument(
            f"{field} {value!r:.80} is invalid: use 1-64 characters of A-Z a-z 0-9 . _ -, "
            "starting with a letter or digit"
        )
    return value


MAX_PATH_BYTES = 4096
MAX_BRANCH_BYTES = 255
_BRANCH_FORBIDDEN = set(" ~^:?*[\\\x7f")


def validate_path(value: str, field: str = "path") -> str:
    """A relative POSIX path of UTF-8 segments, no empty/`.`/`..` segment, none that a file system
    reads as `.git`, no NUL."""
    if not value:
        raise InvalidArgument(f"{field} is required")
    if len(value.encode("utf-8", "surrogatepass")) > MAX_PATH_BYTES:
        raise InvalidArgument(f"{field} is longer than {MAX_PATH_BYTES} bytes")
    if "\0" in value:
        raise InvalidArgument(f"{field} {value!r:.80} contains a NUL character")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidArgument(f"{field} {value!r:.80} is not valid UTF-8") from None
    if value.startswith("/"):
        raise InvalidArgument(f"{field} {value!r:.80} must be relative (no leading /)")
    for segment in value.split("/"):
        if segment in ("", ".", ".."):
            raise InvalidArgument(f"{field} {value!r:.80} has an empty, '.' or '..' segment")
        if _is_dotgit(segment):
            raise InvalidArgument(
                f"{field} {value!r:.80} contains a .git segment ({segment!r:.40} is .git on "
                "some file systems)"
            )
        if len(segment.encode()) > 255:
            raise InvalidArgument(f"{field} {value!r:.80} has a segment over 255 bytes")
    return value


# Names that git's fsck reports as `.git` (hasDotgit), as file systems read them: HFS+ ignores
# these code points and case; NTFS ignores case, trailing dots and spaces, reads `git~1` as the
# short name of `.git`, and `:` or `\\` end the name.
_HFS_IGNORABLE = dict.fromkeys(
    [0x200C, 0x200D, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x206A, 0x2070), 0xFEFF]
)
_NTFS_DOTGIT = re.compile(r"(?:\.git|git~1)[. ]*(?:[:\\].*)?", re.IGNORECASE | re.DOTALL)


def _is_dotgit(segment: str) -> bool:
    hfs = segment.translate(_HFS_IGNORABLE)
    return hfs.lower() == ".git" or _NTFS_DOTGIT.fullmatch(segment) is not None


def validate_branch_name(value: str, field: str = "name") -> str:
    """git's check-ref-format rules for a branch name, at most 255 bytes."""
    if not value:
        raise InvalidArgument(f"{field} is required")

    def bad(reason: str) -> InvalidArgument:
        return InvalidArgument(f"{field} {value!r:.80} is not a valid branch name: {reason}")

    if len(value.encode()) > MAX_BRANCH_BYTES:
        raise bad(f"longer than {MAX_BRANCH_BYTES} bytes")
    if value == "@" or value == "HEAD":
        raise bad("reserved name")
    if ".." in value or "@{" in value or "//" in value:
        raise bad("contains '..', '@{' or '//'")
    if any(c in _BRANCH_FORBIDDEN or ord(c) < 32 for c in value):
        raise bad("contains a space, control character or one of ~^:?*[\\")
    if value.startswith(("-", "/")) or value.endswith(("/", ".", ".lock")):
        raise bad("starts with '-' or '/', or ends with '/', '.' or '.lock'")
    for component in value.split("/"):
        if component.startswith(".") or component.endswith(".lock"):
            raise bad("a component starts with '.' or ends with '.lock'")
    return value
