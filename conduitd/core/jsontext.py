"""Arrow values to JSON text, vectorised: nested columns (objects, lists) become JSON strings for a
`jsonb` or text column without a Python call per row.

The output is compact JSON (no spaces), keys in column order, equal to what `orjson.dumps` gives
for the same values. Types without a vectorised form (maps, binaries, strings with control
characters other than \\n, \\r and \\t) take a per-value path.
"""

from __future__ import annotations

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

_NEEDS_ESCAPE = r'["\\\x00-\x1f]'
_RARE_CONTROL = r"[\x00-\x08\x0b\x0c\x0e-\x1f]"
_ESCAPES = (("\\", "\\\\"), ('"', '\\"'), ("\n", "\\n"), ("\r", "\\r"), ("\t", "\\t"))


def to_json_text(array: pa.Array | pa.ChunkedArray) -> pa.Array:
    """JSON text of every value; a null value stays null (SQL NULL, not the JSON `null`)."""
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    text = _json(array)
    return pc.if_else(array.is_valid(), text, pa.scalar(None, pa.string())) if array.null_count else text


def _json(array: pa.Array) -> pa.Array:
    """JSON text of every value, the JSON `null` for nulls; never a null string.

    Nested values are walked with a stack of their own, not by recursion: any depth Arrow can
    hold is written (a record 400 levels deep once hit Python's recursion limit here)."""
    done: list[pa.Array] = []
    todo: list[tuple[pa.Array, list[pa.Array] | None]] = [(array, None)]
    while todo:
        current, children = todo.pop()
        if children is not None:  # its children's text is on top of `done`, in order
            texts = done[len(done) - len(children):] if children else []
            del done[len(done) - len(children):]
            done.append(_objects(current, texts) if pa.types.is_struct(current.type) else _lists(current, texts[0]))
            continue
        children = _children(current)
        if children is None:
            done.append(_leaf(current))
        else:
            todo.append((current, children))
            todo.extend((child, None) for child in reversed(children))
    (text,) = done
    return text


def _children(array: pa.Array) -> list[pa.Array] | None:
    """The arrays whose JSON text makes this one's, or None for a leaf. A struct's string
    member without nulls is quoted by the join itself (see `_objects`), not walked."""
    kind = array.type
    if pa.types.is_struct(kind) and kind.num_fields:
        return [child for child in array.flatten() if not _plain_strings(child)]
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        return [array.flatten()]
    return None


def _plain_strings(child: pa.Array) -> bool:
    return bool(child.null_count == 0 and pa.types.is_string(child.type))


def _leaf(array: pa.Array) -> pa.Array:
    kind = array.type
    if pa.types.is_null(kind):
        return pa.array(["null"] * len(array), pa.string())
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return _strings(array.cast(pa.string()))
    if pa.types.is_boolean(kind) or pa.types.is_integer(kind) or pa.types.is_decimal(kind):
        return array.cast(pa.string()).fill_null("null")
    if pa.types.is_floating(kind):
        finite = pc.is_finite(array)
        return pc.if_else(finite, array.cast(pa.string()), "null").fill_null("null")
    if pa.types.is_timestamp(kind):
        suffix = "Z" if kind.tz else ""
        return _quoted(pc.strftime(array, format="%Y-%m-%dT%H:%M:%S" + suffix))
    if pa.types.is_date(kind):
        return _quoted(pc.strftime(array, format="%Y-%m-%d"))
    if pa.types.is_struct(kind):  # without fields
        return pc.if_else(array.is_valid(), "{}", "null")
    return _per_value(array)


def _quoted(text: pa.Array) -> pa.Array:
    return pc.binary_join_element_wise('"', text, '"', "").fill_null("null")


def _strings(strings: pa.Array) -> pa.Array:
    return _quoted(_escaped(strings))


def _escaped(strings: pa.Array) -> pa.Array:
    """String contents as they go between JSON quotes."""
    if _may_need_escape(strings):
        if pc.any(pc.match_substring_regex(strings, _RARE_CONTROL)).as_py():
            inner = pc.utf8_slice_codeunits(_per_value(strings), 1, -1)
            return pc.if_else(strings.is_valid(), inner, pa.scalar(None, pa.string()))
        for plain, escaped in _ESCAPES:
            strings = pc.replace_substring(strings, plain, escaped)
    return strings


def _may_need_escape(strings: pa.Array) -> bool:
    """Whether any byte of the strings' data is a quote, a backslash or a control character: one
    pass over the bytes (a false alarm only costs the exact check)."""
    _, offsets, data = strings.buffers()
    if data is None or len(strings) == 0:
        return False
    bounds = np.frombuffer(offsets, dtype=np.int32)[strings.offset:strings.offset + len(strings) + 1]
    raw = np.frombuffer(data, dtype=np.uint8)[int(bounds[0]):int(bounds[-1])]
    return bool(np.any(raw < 0x20) or np.any(raw == 0x22) or np.any(raw == 0x5C))


def _objects(array: pa.StructArray, walked: list[pa.Array]) -> pa.Array:
    """`walked`: the JSON text of the members `_children` named, in order."""
    kind = array.type
    parts: list[pa.Array | str] = []
    texts = iter(walked)
    for index, child in enumerate(array.flatten()):
        name = orjson.dumps(kind.field(index).name).decode()
        parts.append(("{" if index == 0 else ",") + name + ":")
        parts.extend(['"', _escaped(child), '"'] if _plain_strings(child) else [next(texts)])
    parts.append("}")
    joined = pc.binary_join_element_wise(*_merged(parts), "")
    return pc.if_else(array.is_valid(), joined, "null") if array.null_count else joined


def _merged(parts: list[pa.Array | str]) -> list[pa.Array | str]:
    """Adjacent constants as one: the join costs about the same per part and row, whatever
    the part ('{"a":' and '"' are one part '{"a":"')."""
    merged: list[pa.Array | str] = []
    for part in parts:
        if isinstance(part, str) and merged and isinstance(merged[-1], str):
            merged[-1] += part
        else:
            merged.append(part)
    return merged


def _lists(array: pa.ListArray, values: pa.Array) -> pa.Array:
    """`values`: the JSON text of the flattened items."""
    offsets = array.offsets
    start = offsets[0].as_py()
    relative = pc.subtract(offsets, start).cast(pa.int32() if pa.types.is_list(array.type) else pa.int64())
    builder = pa.ListArray if pa.types.is_list(array.type) else pa.LargeListArray
    items = builder.from_arrays(relative, values)
    joined = pc.binary_join(items, ",")
    wrapped = pc.binary_join_element_wise("[", joined, "]", "")
    return pc.if_else(array.is_valid(), wrapped, "null")


def _per_value(array: pa.Array) -> pa.Array:
    return pa.array([orjson.dumps(v, default=_default).decode() for v in array.to_pylist()], pa.string())


def _default(value: object) -> object:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="backslashreplace")
    return str(value)
