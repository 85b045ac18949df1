"""The gRPC codec: betterproto2, with a hand-written fast path for the hot bulk messages.

A BatchOperations call carries up to 1,000 small sub-messages, and a streamed blob is a message
per 64 KiB chunk; betterproto2 spends tens of microseconds on each in pure Python, more than the
storage work behind them. These messages have a flat shape (strings, bytes, integers, bools, a
double, one level of nesting), so they are encoded and decoded here directly; the bytes are
exactly betterproto2's (property tests check both directions). Anything unexpected on decode (an
unknown wire type, bad UTF-8, two members of a oneof) falls back to betterproto2, which decides.
"""

import struct
from collections.abc import Callable
from typing import Any

from grpclib.encoding.proto import ProtoCodec

from generated.govc import (
    BatchOperation,
    BatchOperationResult,
    BatchOperationsRequest,
    BatchOperationsResponse,
    StreamBlobResponse,
    StreamChunk,
    StreamError,
    StreamMetadata,
    StreamProgress,
    UploadBlobStreamRequest,
    UploadMetadata,
)

_DOUBLE = struct.Struct("<d")


class _Fallback(Exception):
    """The fast decoder met something it does not handle; betterproto2 takes over."""


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _bytes_field(number: int, data: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(data)) + data if data else b""


def _str_field(number: int, text: str) -> bytes:
    return _bytes_field(number, text.encode()) if text else b""


def _bool_field(number: int, flag: bool) -> bytes:
    return _varint(number << 3) + b"\x01" if flag else b""


def _int_field(number: int, value: int) -> bytes:
    # Negative int32/int64 go on the wire as 64-bit two's complement, like every protobuf.
    return _varint(number << 3) + _varint(value & 0xFFFFFFFFFFFFFFFF) if value else b""


def _double_field(number: int, value: float) -> bytes:
    return _varint(number << 3 | 1) + _DOUBLE.pack(value) if value else b""


def _message_field(number: int, body: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(body)) + body  # present even when empty


def _fields(data: bytes) -> list[tuple[int, int, Any]]:
    """(field number, wire type, value) of a message: bytes for length-delimited fields,
    int for varints, float for 64-bit fields."""
    out: list[tuple[int, int, Any]] = []
    pos, end = 0, len(data)
    while pos < end:
        key, pos = _read_varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _read_varint(data, pos)
            out.append((number, wire, value))
        elif wire == 2:
            length, pos = _read_varint(data, pos)
            if pos + length > end:
                raise _Fallback
            out.append((number, wire, data[pos : pos + length]))
            pos += length
        elif wire == 1:
            if pos + 8 > end:
                raise _Fallback
            out.append((number, wire, _DOUBLE.unpack_from(data, pos)[0]))
            pos += 8
        else:
            raise _Fallback
    return out


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise _Fallback
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _text(value: Any, wire: int) -> str:
    if wire != 2:
        raise _Fallback
    try:
        return bytes(value).decode()
    except UnicodeDecodeError:
        raise _Fallback from None


def _blob(value: Any, wire: int) -> bytes:
    if wire != 2:
        raise _Fallback
    return bytes(value)


def _flag(value: Any, wire: int) -> bool:
    if wire != 0:
        raise _Fallback
    return bool(value)


def _signed(value: Any, wire: int, bits: int) -> int:
    if wire != 0:
        raise _Fallback
    value &= (1 << bits) - 1
    return int(value - (1 << bits) if value >> (bits - 1) else value)


def _int32(value: Any, wire: int) -> int:
    return _signed(value, wire, 32)


def _int64(value: Any, wire: int) -> int:
    return _signed(value, wire, 64)


def _chunk_body(chunk: StreamChunk) -> bytes:
    return (
        _str_field(1, chunk.stream_id)
        + _int_field(2, chunk.sequence_num)
        + _bytes_field(3, chunk.data)
        + _str_field(4, chunk.checksum)
        + _bool_field(5, chunk.is_last)
    )


def _decode_chunk(data: bytes) -> StreamChunk:
    chunk = StreamChunk()
    for number, wire, value in _fields(data):
        if number == 1:
            chunk.stream_id = _text(value, wire)
        elif number == 2:
            chunk.sequence_num = _int32(value, wire)
        elif number == 3:
            chunk.data = _blob(value, wire)
        elif number == 4:
            chunk.checksum = _text(value, wire)
        elif number == 5:
            chunk.is_last = _flag(value, wire)
    return chunk


def encode_stream_response(message: StreamBlobResponse) -> bytes:
    parts = []
    if (metadata := message.metadata) is not None:
        parts.append(
            _message_field(
                1,
                _str_field(1, metadata.stream_id)
                + _int_field(2, metadata.total_size)
                + _int_field(3, metadata.chunk_count)
                + _str_field(4, metadata.content_type)
                + _str_field(5, metadata.checksum),
            )
        )
    if message.chunk is not None:
        parts.append(_message_field(2, _chunk_body(message.chunk)))
    if (progress := message.progress) is not None:
        parts.append(
            _message_field(
                3,
                _str_field(1, progress.stream_id)
                + _int_field(2, progress.bytes_streamed)
                + _int_field(3, progress.total_bytes)
                + _int_field(4, progress.chunks_streamed)
                + _int_field(5, progress.total_chunks)
                + _double_field(6, progress.transfer_rate_mbps)
                + _str_field(7, progress.status),
            )
        )
    if (error := message.error) is not None:
        parts.append(
            _message_field(
                4,
                _str_field(1, error.stream_id)
                + _str_field(2, error.error)
                + _int_field(3, error.error_code),
            )
        )
    return b"".join(parts)


def decode_stream_response(data: bytes) -> StreamBlobResponse:
    fields = _fields(data)
    if len({number for number, _, _ in fields if number in (1, 2, 3, 4)}) > 1:
        raise _Fallback  # several oneof members: let betterproto2 decide
    message = StreamBlobResponse()
    for number, wire, value in fields:
        body = _blob(value, wire) if number in (1, 2, 3, 4) else b""
        if number == 1:
            metadata = StreamMetadata()
            for n, w, v in _fields(body):
                if n == 1:
                    metadata.stream_id = _text(v, w)
                elif n == 2:
                    metadata.total_size = _int64(v, w)
                elif n == 3:
                    metadata.chunk_count = _int32(v, w)
                elif n == 4:
                    metadata.content_type = _text(v, w)
                elif n == 5:
                    metadata.checksum = _text(v, w)
            message.metadata = metadata
        elif number == 2:
            message.chunk = _decode_chunk(body)
        elif number == 3:
            progress = StreamProgress()
            for n, w, v in _fields(body):
                if n == 1:
                    progress.stream_id = _text(v, w)
                elif n == 2:
                    progress.bytes_streamed = _int64(v, w)
                elif n == 3:
                    progress.total_bytes = _int64(v, w)
                elif n == 4:
                    progress.chunks_streamed = _int32(v, w)
                elif n == 5:
                    progress.total_chunks = _int32(v, w)
                elif n == 6:
                    if w != 1:
                        raise _Fallback
                    progress.transfer_rate_mbps = v
                elif n == 7:
                    progress.status = _text(v, w)
            message.progress = progress
        elif number == 4:
            error = StreamError()
            for n, w, v in _fields(body):
                if n == 1:
                    error.stream_id = _text(v, w)
                elif n == 2:
                    error.error = _text(v, w)
                elif n == 3:
                    error.error_code = _int32(v, w)
            message.error = error
    return message


def encode_upload_request(message: UploadBlobStreamRequest) -> bytes:
    parts = [_str_field(1, message.repository_id)]
    if (metadata := message.metadata) is not None:
        parts.append(
            _message_field(
                2,
                _str_field(1, metadata.filename)
                + _int_field(2, metadata.total_size)
                + _int_field(3, metadata.chunk_size)
                + _str_field(4, metadata.content_type),
            )
        )
    if message.chunk is not None:
        parts.append(_message_field(3, _chunk_body(message.chunk)))
    return b"".join(parts)


def decode_upload_request(data: bytes) -> UploadBlobStreamRequest:
    fields = _fields(data)
    if len({number for number, _, _ in fields if number in (2, 3)}) > 1:
        raise _Fallback
    message = UploadBlobStreamRequest()
    for number, wire, value in fields:
        if number == 1:
            message.repository_id = _text(value, wire)
        elif number == 2:
            metadata = UploadMetadata()
            for n, w, v in _fields(_blob(value, wire)):
                if n == 1:
                    metadata.filename = _text(v, w)
                elif n == 2:
                    metadata.total_size = _int64(v, w)
                elif n == 3:
                    metadata.chunk_size = _int32(v, w)
                elif n == 4:
                    metadata.content_type = _text(v, w)
            message.metadata = metadata
        elif number == 3:
            message.chunk = _decode_chunk(_blob(value, wire))
    return message


def encode_request(message: BatchOperationsRequest) -> bytes:
    parts = [_str_field(1, message.repository_id)]
    for op in message.operations:
        body = _str_field(1, op.id) + _str_field(2, op.type) + _bytes_field(3, op.params)
        parts.append(_varint(2 << 3 | 2) + _varint(len(body)) + body)
    parts.append(_bool_field(3, message.parallel))
    parts.append(_bool_field(4, message.transaction))
    return b"".join(parts)


def decode_request(data: bytes) -> BatchOperationsRequest:
    message = BatchOperationsRequest()
    operations = []
    for number, wire, value in _fields(data):
        if number == 1:
            message.repository_id = _text(value, wire)
        elif number == 2:
            op = BatchOperation()
            for sub_number, sub_wire, sub_value in _fields(_blob(value, wire)):
                if sub_number == 1:
                    op.id = _text(sub_value, sub_wire)
                elif sub_number == 2:
                    op.type = _text(sub_value, sub_wire)
                elif sub_number == 3:
                    op.params = _blob(sub_value, sub_wire)
            operations.append(op)
        elif number == 3:
            message.parallel = _flag(value, wire)
        elif number == 4:
            message.transaction = _flag(value, wire)
    message.operations = operations
    return message


def encode_response(message: BatchOperationsResponse) -> bytes:
    parts = []
    for result in message.results:
        body = (
            _str_field(1, result.id)
            + _bool_field(2, result.success)
            + _bytes_field(3, result.result)
            + _str_field(4, result.error)
        )
        parts.append(_varint(1 << 3 | 2) + _varint(len(body)) + body)
    parts.append(_bool_field(2, message.success))
    parts.append(_str_field(3, message.error))
    if message.execution_time_ms:
        parts.append(_varint(4 << 3 | 1) + _DOUBLE.pack(message.execution_time_ms))
    return b"".join(parts)


def decode_response(data: bytes) -> BatchOperationsResponse:
    message = BatchOperationsResponse()
    results = []
    for number, wire, value in _fields(data):
        if number == 1:
            result = BatchOperationResult()
            for sub_number, sub_wire, sub_value in _fields(_blob(value, wire)):
                if sub_number == 1:
                    result.id = _text(sub_value, sub_wire)
                elif sub_number == 2:
                    result.success = _flag(sub_value, sub_wire)
                elif sub_number == 3:
                    result.result = _blob(sub_value, sub_wire)
                elif sub_number == 4:
                    result.error = _text(sub_value, sub_wire)
            results.append(result)
        elif number == 2:
            message.success = _flag(value, wire)
        elif number == 3:
            message.error = _text(value, wire)
        elif number == 4:
            if wire != 1:
                raise _Fallback
            message.execution_time_ms = value
    message.results = results
    return message


_ENCODERS: dict[type, Callable[[Any], bytes]] = {
    BatchOperationsRequest: encode_request,
    BatchOperationsResponse: encode_response,
    StreamBlobResponse: encode_stream_response,
    UploadBlobStreamRequest: encode_upload_request,
}
_DECODERS: dict[type, Callable[[bytes], Any]] = {
    BatchOperationsRequest: decode_request,
    BatchOperationsResponse: decode_response,
    StreamBlobResponse: decode_stream_response,
    UploadBlobStreamRequest: decode_upload_request,
}


class GovcCodec(ProtoCodec):
    """ProtoCodec with the fast path above; every other message goes through betterproto2."""

    def encode(self, message: Any, message_type: Any) -> bytes:
        encoder = _ENCODERS.get(message_type)
        if encoder is not None and type(message) is message_type:
            return encoder(message)
        return super().encode(message, message_type)

    def decode(self, data: bytes, message_type: Any) -> Any:
        decoder = _DECODERS.get(message_type)
        if decoder is not None:
            try:
                return decoder(data)
            except _Fallback:
                pass
        return super().decode(data, message_type)
