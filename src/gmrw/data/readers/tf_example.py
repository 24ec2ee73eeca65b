"""Pick features out of a serialized ``tf.train.Example`` without reading or parsing the rest.

A MOVi-E record is ~20 MB, most of it per-pixel flows stored as millions of int64 varints: a full
protobuf parse takes ~0.1 s, and reading it all costs disk bandwidth, while a training clip needs
two PNG frames of ``video``. :func:`select_features` walks the protobuf wire format of the
record's feature map (a few dozen entries), reading only each entry's header and name, and copies
out the entries whose names start with the wanted top-level keys, as a smaller serialized
``Example`` (parsed in a millisecond).

Wire format (protobuf encoding): ``Example{1: Features}``, ``Features{1: repeated map entry}``,
map entry ``{1: key string, 2: Feature}``; all of these are length-delimited fields.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

#: ``read(position, size)`` → up to ``size`` bytes of the serialized record from ``position``.
Reader = Callable[[int, int], bytes]

_HEADER = 24  # a tag and a length varint fit in 20 bytes
_NAME = 256  # room for a feature name after an entry's header


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(buf):
            raise ValueError("truncated protobuf varint")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _length_delimited(read: Reader, pos: int, extra: int = 0) -> tuple[int, int, int, bytes]:
    """The field starting at ``pos``: (field number, payload start, payload end, bytes read)."""
    head = read(pos, _HEADER + extra)
    tag, p = _varint(head, 0)
    if tag & 7 != 2:
        raise ValueError(f"expected a length-delimited field at byte {pos}, found wire type {tag & 7}")
    size, p = _varint(head, p)
    return tag >> 3, pos + p, pos + p + size, head[p:]


def _entry_key(payload: bytes) -> str | None:
    """The key (field 1) of a map entry from (a prefix of) its payload; None if not in the bytes."""
    pos = 0
    while pos < len(payload):
        tag, p = _varint(payload, pos)
        size, p = _varint(payload, p) if tag & 7 == 2 else (0, p)
        if tag == (1 << 3) | 2:
            return bytes(payload[p : p + size]).decode() if p + size <= len(payload) else None
        if tag & 7 != 2:
            raise ValueError(f"unexpected wire type {tag & 7} in a feature map entry")
        pos = p + size
    return None


def select_features(read: Reader, size: int, keys: Iterable[str]) -> bytes:
    """A serialized ``Example`` with only the features named ``key`` or ``key/…`` for ``keys``,
    from a record of ``size`` bytes available through ``read``."""
    wanted = set(keys)
    kept: list[bytes] = []
    pos = 0
    while pos < size:
        field, start, end, _ = _length_delimited(read, pos)
        if field == 1:  # Example.features
            entry = start
            while entry < end:
                number, entry_start, entry_end, prefix = _length_delimited(read, entry, _NAME)
                if number == 1:  # a map entry; protobuf writes its key first, so the prefix holds it
                    try:
                        name = _entry_key(prefix[: entry_end - entry_start])
                    except ValueError:  # the prefix cut a field short
                        name = None
                    if name is None:
                        name = _entry_key(read(entry_start, entry_end - entry_start))
                    if name is not None and name.split("/", 1)[0] in wanted:
                        kept.append(read(entry, entry_end - entry))
                entry = entry_end
        pos = end
    features = b"".join(kept)
    return b"\x0a" + _encode_varint(len(features)) + features


def select_from_bytes(serialized: bytes, keys: Iterable[str]) -> bytes:
    """:func:`select_features` on a record already in memory."""
    view = memoryview(serialized)
    return select_features(lambda p, n: bytes(view[p : p + n]), len(serialized), keys)
