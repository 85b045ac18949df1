"""grpclib's codec, with govc's wire fast path (shared by the server and the client)."""

from typing import Any

from grpclib.const import Status
from grpclib.encoding.proto import ProtoCodec

from govc.errors import InvalidArgument
from govc.transport.errors import MalformedMessage
from govc.wire.codec import decode_message, encode_message


class GovcCodec(ProtoCodec):
    """ProtoCodec that encodes and decodes through `govc.wire`.

    `strict` (the server's door, where the bytes are untrusted): a message betterproto2 would
    decode leniently (a field running past the end, a wrong wire type, two members of a oneof)
    is INVALID_ARGUMENT too. Every request of every RPC, streamed ones included, is decoded
    here, so this is the one place that checks them."""

    def __init__(self, *, strict: bool = False) -> None:
        self._strict = strict

    def encode(self, message: Any, message_type: Any) -> bytes:
        if not isinstance(message, message_type):
            raise TypeError(f"message must be of type {message_type!r}, not {type(message)!r}")
        return encode_message(message, message_type)

    def decode(self, data: bytes, message_type: Any) -> Any:
        try:
            return decode_message(data, message_type, strict=self._strict)
        except InvalidArgument as exc:
            raise MalformedMessage(Status.INVALID_ARGUMENT, exc.message) from None
