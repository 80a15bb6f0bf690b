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
0, 1, 2 and 5), nested deeper than protobuf's default limit of 100 messages (which
onnxruntime's parser keeps too) or made of more than ``MAX_FIELDS`` fields is a
``WireError``: a hostile file is refused in bounded time.
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
# Protobuf's default recursion limit: onnxruntime's parser reads no deeper, and a bound
# keeps the merging of repeated singular messages (bytes joined per level) linear.
MAX_DEPTH = 100
# Fields read in a whole file at most: a hostile file of tiny fields (two bytes each) is
# refused after about 16 seconds of reading (measured), not walked for minutes. A real
# model has a few per node and tensor (tensor data is one field).
MAX_FIELDS = 20_000_000

Field = tuple[int, int, int | memoryview]  # field number, wire type, value


class WireError(ValueError):
    """Bytes that are not a well-formed protobuf message."""


def fields(data: memoryview, budget: list[int] | None = None) -> Iterator[Field]:
    """The fields of one message: (number, wire type, value); a varint's value is its
    integer, a length-delimited field's its bytes; fixed-size fields are skipped over.
    ``budget``: fields left to read in the whole file (one less per field)."""
    at, end = 0, len(data)
    while at < end:
        if budget is not None:
            budget[0] -= 1
            if budget[0] < 0:
                raise WireError(
                    f"more than {MAX_FIELDS:,} protobuf fields: not a model shipml reads"
                )
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
    data: memoryview, singular: frozenset[int], repeated: frozenset[int], budget: list[int]
) -> dict[int, list[memoryview]]:
    """The message fields of ``data`` by number: each occurrence of a repeated one, and
    a singular one as the merge of its occurrences (one entry: their bytes joined)."""
    found: dict[int, list[memoryview]] = {}
    for number, wire, value in fields(data, budget):
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


def tensors(model: memoryview, budget: list[int] | None = None) -> Iterator[memoryview]:
    """Every tensor of a serialised ModelProto (see the module's docstring), walked with
    stacks, not recursion, and refused nested deeper than ``MAX_DEPTH`` messages."""
    budget = [MAX_FIELDS] if budget is None else budget

    def read(view: memoryview, depth: int, kinds: Kinds) -> dict[int, list[memoryview]]:
        if depth > MAX_DEPTH - 2:  # room for a tensor and its external-data entry
            raise WireError(f"messages nested more than {MAX_DEPTH} deep: protobuf's limit")
        return _messages(view, *kinds, budget)

    top = read(model, 1, _MODEL)
    graphs = [(g, 2) for g in top.get(MODEL_GRAPH, [])]
    nodes: list[tuple[memoryview, int]] = []
    for function in top.get(MODEL_FUNCTIONS, []):
        nodes += [(n, 3) for n in read(function, 2, _FUNCTION).get(FUNCTION_NODE, [])]
    sparse: list[tuple[memoryview, int]] = []
    while graphs or nodes or sparse:
        if sparse:
            found = read(*sparse.pop(), _SPARSE)
            yield from found.get(SPARSE_VALUES, [])
            yield from found.get(SPARSE_INDICES, [])
            continue
        if nodes:
            node, depth = nodes.pop()
            for attribute in read(node, depth, _NODE).get(NODE_ATTRIBUTE, []):
                found = read(attribute, depth + 1, _ATTRIBUTE)
                yield from found.get(ATTRIBUTE_T, [])
                yield from found.get(ATTRIBUTE_TENSORS, [])
                for number in (ATTRIBUTE_SPARSE_TENSOR, ATTRIBUTE_SPARSE_TENSORS):
                    sparse += [(m, depth + 2) for m in found.get(number, [])]
                for number in (ATTRIBUTE_G, ATTRIBUTE_GRAPHS):
                    graphs += [(m, depth + 2) for m in found.get(number, [])]
            continue
        graph, depth = graphs.pop()
        found = read(graph, depth, _GRAPH)
        yield from found.get(GRAPH_INITIALIZER, [])
        sparse += [(m, depth + 1) for m in found.get(GRAPH_SPARSE_INITIALIZER, [])]
        nodes += [(m, depth + 1) for m in found.get(GRAPH_NODE, [])]


def external_location(tensor: memoryview, budget: list[int] | None = None) -> str | None:
    """The ``location`` of a tensor stored as external data (the last such entry, as a
    dict of the entries keeps it); None for a tensor stored in the file."""
    kind = 0
    entries: list[memoryview] = []
    for number, _, value in fields(tensor, budget):
        if number == TENSOR_DATA_LOCATION and isinstance(value, int):
            kind = value  # a singular scalar: the last one counts
        elif number == TENSOR_EXTERNAL_DATA and isinstance(value, memoryview):
            entries.append(value)
    if kind != EXTERNAL:
        return None
    location = ""
    for entry in entries:
        strings = {ENTRY_KEY: "", ENTRY_VALUE: ""}
        for number, _, text in fields(entry, budget):
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
    data, budget = memoryview(model_file.read_bytes()), [MAX_FIELDS]
    found = (external_location(t, budget) for t in tensors(data, budget))
    return [name for name in found if name is not None]
