"""Payloads shared by the client and the floor server, so both sides agree without talking.

Content is pseudo-random (incompressible), generated from a fixed seed per size: the floor server
builds the same bytes as the client and so can answer GetBlob for the blob id the client asks.
"""

import hashlib
import random
from functools import cache

KIB = 1024
MIB = 1024 * 1024


@cache
def blob_payload(size: int) -> bytes:
    """The reference payload of `size` bytes (the same in every process)."""
    return random.Random(f"govc-bench-payload-{size}").randbytes(size)


def git_blob_id(content: bytes) -> str:
    """The git object id (SHA-1 hex) of a blob with this content."""
    return hashlib.sha1(b"blob %d\x00" % len(content) + content).hexdigest()


def human_size(size: int) -> str:
    if size >= MIB and size % MIB == 0:
        return f"{size // MIB} MiB"
    if size >= KIB and size % KIB == 0:
        return f"{size // KIB} KiB"
    return f"{size} B"
