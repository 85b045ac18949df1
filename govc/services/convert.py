"""Small conversions between domain values and wire values."""

import datetime

_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)


def timestamp_from_us(us: int) -> datetime.datetime:
    return _EPOCH + datetime.timedelta(microseconds=us)
