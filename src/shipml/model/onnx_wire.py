"""The files an ONNX graph names as external data, read from protobuf's wire format
without the ``onnx`` package.

Why not ``onnx.load_model(..., load_external_data=False)``: importing ``onnx`` (and
protobuf's Python runtime) costs a model server about 15 MiB of resident memory for
this one check, made once at start-up (benchmarks/README.md, "server RSS").

What is read, as the ONNX file format defines it (onnx/onnx.proto; the field numbers
below are checked against ``onnx``'s own descriptors in tests/model/test_onnx_wire.py):
every tensor of the model — the main graph's initializers and sparse initializers
(values and indices), the tensors, sparse tensors and subgraphs of every node's
attributes, at any depth, and the nodes of the model's functions — and, of each tensor
whose ``data_location`` is EXTERNAL, the ``location`` entry of its ``external_data``.

Protobuf's rules are kept where they decide what a parser (onnxruntime's) sees: a
singular message field that occurs several times is the merge of its occurrences (its
bytes concatenated), a singular scalar the last occurrence. Anything that is not
well-formed protobuf (a truncated field, a varint over ten bytes, a wire type outside
0, 1, 2 and 5) is a ``WireError``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

# onnx.proto's field numbers (message.field)
MODEL_GRAPH, MODEL_FUNCTIONS = 7, 25
GRAPH_NODE, GRAPH_INITIALIZER, GRAPH_SPARSE_INITIALIZER = 1, 5, 15
NODE_ATTRIBUTE = 5
FUNCTION_NODE = 7
ATTRIBUTE_T, ATTRIBUTE_G, ATTRIBUTE_TENSORS, ATTRIBUTE_GRAPHS = 5, 6, 10, 11
ATTRIBUTE_SPARSE_TENSOR, ATTRIBUTE_SPARSE_TENSORS = 22, 23
SPARSE_VALUES, SPARSE_INDICES = 1, 2
TENSOR_EXTERNAL_DATA, TENSOR_DATA_LOCATION = 13, 14
ENTRY_KEY, ENTRY_VALUE = 1, 2
EXTERNAL = 1  # TensorProto.DataLocation

Field = tuple[int, int, int | memoryview]  # field number, wire type, value


class WireError(ValueError):
    """Bytes that are not a well-formed protobuf message."""


def fields(data: memoryview) -> Iterator[Field]:
    """The fields of one message: (number, wire type, value); a varint's value is its
    integer, a length-delimited field's its bytes; fixed-size fields are skipped over."""
    at, end = 0, len(data)
    while at < end:
        key, at = _varint(data, at)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise WireError(f"field number 0 at byte {at}")
        if wire == 0:
            value, at = _varint(data, at)
            yield number, wire, value
        elif wire == 2:
            size, at = _varint(data, at)
            if size > end - at:
                raise WireError(f"a field of {size} bytes at byte {at} runs past the end")
            yield number, wire, data[at : at + size]
            at += size
        elif wire in (1, 5):
            at += 8 if wire == 1 else 4
            if at > end:
                raise WireError("a fixed-size field runs past the end")
        else:
            raise WireError(f"wire type {wire} (field {number}) is not one ONNX uses")


def _varint(data: memoryview, at: int) -> tuple[int, int]:
    value = shift = 0
    for i in range(at, min(at + 10, len(data))):
        byte = data[i]
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value & 0xFFFFFFFFFFFFFFFF, i + 1
        shift += 7
    raise WireError(f"a varint at byte {at} is truncated or longer than ten bytes")


def _messages(
    data: memoryview, singular: frozenset[int], repeated: frozenset[int]
) -> dict[int, list[memoryview]]:
    """The message fields of ``data`` by number: each occurrence of a repeated one, and
    a singular one as the merge of its occurrences (one entry: their bytes joined)."""
    found: dict[int, list[memoryview]] = {}
    for number, wire, value in fields(data):
        if (number in singular or number in repeated) and wire == 2:
            assert isinstance(value, memoryview)
            found.setdefault(number, []).append(value)
    for number in singular & found.keys():
        if len(found[number]) > 1:
            found[number] = [memoryview(b"".join(bytes(v) for v in found[number]))]
    return found


Kinds = tuple[frozenset[int], frozenset[int]]  # a message's singular, repeated messages
_MODEL: Kinds = (frozenset({MODEL_GRAPH}), frozenset({MODEL_FUNCTIONS}))
_GRAPH: Kinds = (frozenset(), frozenset({GRAPH_NODE, GRAPH_INITIALIZER, GRAPH_SPARSE_INITIALIZER}))
_NODE: Kinds = (frozenset(), frozenset({NODE_ATTRIBUTE}))
_FUNCTION: Kinds = (frozenset(), frozenset({FUNCTION_NODE}))
_ATTRIBUTE: Kinds = (
    frozenset({ATTRIBUTE_T, ATTRIBUTE_G, ATTRIBUTE_SPARSE_TENSOR}),
    frozenset({ATTRIBUTE_TENSORS, ATTRIBUTE_GRAPHS, ATTRIBUTE_SPARSE_TENSORS}),
)
_SPARSE: Kinds = (frozenset({SPARSE_VALUES, SPARSE_INDICES}), frozenset())


def tensors(model: memoryview) -> Iterator[memoryview]:
    """Every tensor of a serialised ModelProto (see the module's docstring), without
    recursion: a hostile file's nesting depth cannot exhaust the stack."""
    top = _messages(model, *_MODEL)
    graphs = list(top.get(MODEL_GRAPH, []))
    nodes: list[memoryview] = []
    for function in top.get(MODEL_FUNCTIONS, []):
        nodes += _messages(function, *_FUNCTION).get(FUNCTION_NODE, [])
    sparse: list[memoryview] = []
    while graphs or nodes or sparse:
        if sparse:
            found = _messages(sparse.pop(), *_SPARSE)
            yield from found.get(SPARSE_VALUES, [])
            yield from found.get(SPARSE_INDICES, [])
            continue
        if nodes:
            for attribute in _messages(nodes.pop(), *_NODE).get(NODE_ATTRIBUTE, []):
                found = _messages(attribute, *_ATTRIBUTE)
                yield from found.get(ATTRIBUTE_T, [])
                yield from found.get(ATTRIBUTE_TENSORS, [])
                sparse += found.get(ATTRIBUTE_SPARSE_TENSOR, [])
                sparse += found.get(ATTRIBUTE_SPARSE_TENSORS, [])
                graphs += found.get(ATTRIBUTE_G, [])
                graphs += found.get(ATTRIBUTE_GRAPHS, [])
            continue
        found = _messages(graphs.pop(), *_GRAPH)
        yield from found.get(GRAPH_INITIALIZER, [])
        sparse += found.get(GRAPH_SPARSE_INITIALIZER, [])
        nodes += found.get(GRAPH_NODE, [])


def external_location(tensor: memoryview) -> str | None:
    """The ``location`` of a tensor stored as external data (the last such entry, as a
    dict of the entries keeps it); None for a tensor stored in the file."""
    kind = 0
    entries: list[memoryview] = []
    for number, _, value in fields(tensor):
        if number == TENSOR_DATA_LOCATION and isinstance(value, int):
            kind = value  # a singular scalar: the last one counts
        elif number == TENSOR_EXTERNAL_DATA and isinstance(value, memoryview):
            entries.append(value)
    if kind != EXTERNAL:
        return None
    location = ""
    for entry in entries:
        strings = {ENTRY_KEY: "", ENTRY_VALUE: ""}
        for number, _, text in fields(entry):
            if number in strings and isinstance(text, memoryview):
                strings[number] = _utf8(text)  # singular: the last one counts
        if strings[ENTRY_KEY] == "location":
            location = strings[ENTRY_VALUE]
    return location


def _utf8(text: memoryview) -> str:
    try:
        return bytes(text).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise WireError(f"a string that is not UTF-8: {exc.reason}") from None


def external_locations(model_file: Path) -> list[str]:
    """The locations an ONNX file reads tensor data from, as written in it (the file is
    read whole, as ``onnx.load_model`` read it; the tensors' own bytes are skipped)."""
    data = memoryview(model_file.read_bytes())
    return [name for t in tensors(data) if (name := external_location(t)) is not None]
