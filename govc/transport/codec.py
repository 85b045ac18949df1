"""grpclib's codec, with govc's wire fast path (shared by the server and the client)."""

from typing import Any

from grpclib.const import Status
from grpclib.encoding.proto import ProtoCodec
from grpclib.exceptions import GRPCError

from govc.errors import InvalidArgument
from govc.wire.codec import decode_message, encode_message


class GovcCodec(ProtoCodec):
    """ProtoCodec that encodes and decodes through `govc.wire`."""

    def encode(self, message: Any, message_type: Any) -> bytes:
        if not isinstance(message, message_type):
            raise TypeError(f"message must be of type {message_type!r}, not {type(message)!r}")
        return encode_message(message, message_type)

    def decode(self, data: bytes, message_type: Any) -> Any:
        try:
            return decode_message(data, message_type)
        except InvalidArgument as exc:
            raise GRPCError(Status.INVALID_ARGUMENT, exc.message) from None
