"""The fast codec produces exactly betterproto2's bytes and reads them back the same."""

import datetime
from typing import Any

import pytest
from grpclib.const import Status
from grpclib.exceptions import GRPCError
from hypothesis import given, settings
from hypothesis import strategies as st

from generated.govc import (
    BatchOperation,
    BatchOperationResult,
    BatchOperationsRequest,
    BatchOperationsResponse,
    FullTextSearchRequest,
    FullTextSearchResponse,
    GetBlobRequest,
    GetBlobResponse,
    SearchDocument,
    SearchResult,
    StoreBlobRequest,
    StoreBlobResponse,
    StoreBlobWithDeltaRequest,
    StreamBlobResponse,
    StreamChunk,
    StreamError,
    StreamMetadata,
    StreamProgress,
    UploadBlobStreamRequest,
    UploadMetadata,
)
from govc.transport.codec import GovcCodec
from govc.wire.codec import decode

codec = GovcCodec()
text = st.text(max_size=40)
blob = st.binary(max_size=300)

requests = st.builds(
    BatchOperationsRequest,
    repository_id=text,
    operations=st.lists(st.builds(BatchOperation, id=text, type=text, params=blob), max_size=20),
    parallel=st.booleans(),
    transaction=st.booleans(),
)
responses = st.builds(
    BatchOperationsResponse,
    results=st.lists(
        st.builds(BatchOperationResult, id=text, success=st.booleans(), result=blob, error=text),
        max_size=20,
    ),
    success=st.booleans(),
    error=text,
    execution_time_ms=st.floats(allow_nan=False, allow_infinity=False),
)


def assert_same_as_betterproto2(message: Any) -> None:
    """The fast path writes betterproto2's bytes and reads them back to an equal message."""
    cls = type(message)
    reference = bytes(message)
    assert codec.encode(message, cls) == reference
    assert codec.decode(reference, cls) == cls.parse(reference)


@settings(max_examples=300)
@given(message=requests)
def test_request_bytes_and_values_match_betterproto2(message: BatchOperationsRequest) -> None:
    assert_same_as_betterproto2(message)


@settings(max_examples=300)
@given(message=responses)
def test_response_bytes_and_values_match_betterproto2(message: BatchOperationsResponse) -> None:
    assert_same_as_betterproto2(message)


def test_unknown_fields_and_order_are_tolerated() -> None:
    op = bytes(BatchOperation(id="a", type="store_blob", params=b"{}"))
    # Fields out of order, an unknown varint field 9 and an unknown string field 10.
    data = (
        b"\x20\x01"  # transaction = true
        + b"\x48\x05"  # field 9 varint
        + b"\x52\x03xyz"  # field 10 bytes
        + b"\x12"
        + bytes([len(op)])
        + op  # operations
        + b"\x0a\x01r"  # repository_id
    )
    decoded = decode(data, BatchOperationsRequest)
    assert decoded == BatchOperationsRequest.parse(data)
    assert decoded.repository_id == "r" and decoded.transaction and decoded.operations[0].id == "a"
    # Unknown fields are kept and sent on, as betterproto2 does.
    assert decoded._unknown_fields == b"\x48\x05\x52\x03xyz"
    assert codec.encode(decoded, BatchOperationsRequest) == bytes(
        BatchOperationsRequest.parse(data)
    )


def test_anomalies_fall_back_to_betterproto2() -> None:
    bad_utf8 = b"\x0a\x02\xff\xfe"
    try:
        reference = BatchOperationsRequest.parse(bad_utf8)
    except Exception:  # betterproto2 decides what bad UTF-8 means: if it refuses, so do we,
        # as the client's error (not INTERNAL)
        with pytest.raises(GRPCError) as info:
            codec.decode(bad_utf8, BatchOperationsRequest)
        assert info.value.status == Status.INVALID_ARGUMENT
        assert "BatchOperationsRequest" in (info.value.message or "")
    else:
        assert codec.decode(bad_utf8, BatchOperationsRequest) == reference
    assert decode(b"", BatchOperationsResponse) == BatchOperationsResponse()


def test_other_messages_use_betterproto2() -> None:
    message = StoreBlobWithDeltaRequest(repository_id="r", content=b"x", use_compression=True)
    assert codec.encode(message, StoreBlobWithDeltaRequest) == bytes(message)
    assert codec.decode(bytes(message), StoreBlobWithDeltaRequest) == message


blob_messages = st.one_of(
    st.builds(StoreBlobRequest, repository_id=text, content=st.binary(max_size=64)),
    st.builds(StoreBlobResponse, hash=text, size=st.integers(-(2**63), 2**63 - 1)),
    st.builds(GetBlobRequest, repository_id=text, hash=text),
    st.builds(
        GetBlobResponse,
        content=st.binary(max_size=64),
        hash=text,
        size=st.integers(-(2**63), 2**63 - 1),
    ),
)


@settings(max_examples=300)
@given(message=blob_messages)
def test_blob_messages_match_betterproto2(message: Any) -> None:
    assert_same_as_betterproto2(message)


int32 = st.integers(-(2**31), 2**31 - 1)
int64 = st.integers(-(2**63), 2**63 - 1)
chunks = st.builds(
    StreamChunk, stream_id=text, sequence_num=int32, data=blob, checksum=text, is_last=st.booleans()
)
members = st.one_of(
    st.builds(
        StreamMetadata,
        stream_id=text,
        total_size=int64,
        chunk_count=int32,
        content_type=text,
        checksum=text,
    ).map(lambda m: StreamBlobResponse(metadata=m)),
    chunks.map(lambda c: StreamBlobResponse(chunk=c)),
    st.builds(
        StreamProgress,
        stream_id=text,
        bytes_streamed=int64,
        total_bytes=int64,
        chunks_streamed=int32,
        total_chunks=int32,
        transfer_rate_mbps=st.floats(allow_nan=False, allow_infinity=False),
        status=text,
    ).map(lambda p: StreamBlobResponse(progress=p)),
    st.builds(StreamError, stream_id=text, error=text, error_code=int32).map(
        lambda e: StreamBlobResponse(error=e)
    ),
    st.just(StreamBlobResponse(chunk=StreamChunk())),
)
uploads = st.one_of(
    st.builds(
        UploadMetadata, filename=text, total_size=int64, chunk_size=int32, content_type=text
    ).map(lambda m: ("metadata", m)),
    chunks.map(lambda c: ("chunk", c)),
)


@settings(max_examples=300)
@given(message=members)
def test_stream_response_matches_betterproto2(message: StreamBlobResponse) -> None:
    assert_same_as_betterproto2(message)


@settings(max_examples=300)
@given(repository_id=text, member=uploads)
def test_upload_request_matches_betterproto2(repository_id: str, member: tuple[str, Any]) -> None:
    message = UploadBlobStreamRequest(repository_id=repository_id, **{member[0]: member[1]})
    assert_same_as_betterproto2(message)


def test_two_oneof_members_on_the_wire_fall_back() -> None:
    both = bytes(StreamBlobResponse(metadata=StreamMetadata(stream_id="m"))) + bytes(
        StreamBlobResponse(chunk=StreamChunk(stream_id="c"))
    )
    assert codec.decode(both, StreamBlobResponse) == StreamBlobResponse.parse(both)


timestamps = st.none() | st.datetimes(
    min_value=datetime.datetime(1, 1, 1),
    max_value=datetime.datetime(9999, 12, 31, 23, 59, 59),
    timezones=st.just(datetime.UTC),
)
search_responses = st.builds(
    FullTextSearchResponse,
    results=st.lists(
        st.builds(
            SearchResult,
            document=st.none()
            | st.builds(
                SearchDocument,
                path=text,
                hash=text,
                size=int64,
                last_modified=timestamps,
                content=blob,
                content_type=text,
            ),
            score=st.floats(allow_nan=False, allow_infinity=False),
            highlights=st.lists(text, max_size=3),
        ),
        max_size=12,
    ),
    total=int32,
    query_time_ms=st.floats(allow_nan=False, allow_infinity=False),
)


@settings(max_examples=300)
@given(message=search_responses)
def test_search_response_matches_betterproto2(message: FullTextSearchResponse) -> None:
    assert_same_as_betterproto2(message)


search_requests = st.builds(
    FullTextSearchRequest,
    repository_id=text,
    query=text,
    file_types=st.lists(text, max_size=3),
    max_size=int64,
    min_score=st.floats(allow_nan=False, allow_infinity=False),
    include_content=st.booleans(),
    highlight_length=int32,
    limit=int32,
    offset=int32,
    sort_by=text,
)


@settings(max_examples=300)
@given(message=search_requests)
def test_search_request_matches_betterproto2(message: FullTextSearchRequest) -> None:
    assert_same_as_betterproto2(message)


@settings(max_examples=300)
@given(message=search_responses, cut=st.integers(0, 2000), flip=st.integers(0, 2000))
def test_damaged_bytes_decode_as_betterproto2_does(
    message: FullTextSearchResponse, cut: int, flip: int
) -> None:
    # Truncated and bit-flipped encodings: the fast path returns what betterproto2 returns, or
    # refuses as the client's error where betterproto2 raises.
    data = bytearray(bytes(message))
    if data:
        data[flip % len(data)] ^= 0x80 >> (flip % 8)
    data = data[: cut % (len(data) + 1)]
    try:
        reference = FullTextSearchResponse.parse(bytes(data))
    except Exception:
        with pytest.raises(GRPCError) as info:
            codec.decode(bytes(data), FullTextSearchResponse)
        assert info.value.status == Status.INVALID_ARGUMENT
    else:
        assert codec.decode(bytes(data), FullTextSearchResponse) == reference
