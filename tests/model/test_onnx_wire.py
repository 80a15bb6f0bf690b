"""The external data an ONNX file names, read from the wire format, is what the ``onnx``
package reads: on every place a tensor can hide, under protobuf's merge rules, on
corrupted files, and at depths the ``onnx`` parser refuses."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from google.protobuf.message import DecodeError
from onnx import TensorProto, helper, numpy_helper
from onnx.external_data_helper import set_external_data

from shipml.model import onnx_wire
from shipml.model.onnx_wire import WireError, external_locations
from shipml.serving.otlp_wire import _field  # protobuf's length-delimited field, written


def reference(data: bytes) -> list[str]:
    """What the onnx package reads: every tensor (as shipml read them before), and the
    location of each stored outside the file."""
    proto = onnx.ModelProto()
    proto.ParseFromString(data)

    def graph_tensors(graph: Any) -> list[Any]:
        found = list(graph.initializer)
        for sparse in graph.sparse_initializer:
            found += [sparse.values, sparse.indices]
        for node in graph.node:
            found += attribute_tensors(node.attribute)
        return found

    def attribute_tensors(attributes: Any) -> list[Any]:
        found: list[Any] = []
        for attr in attributes:
            if attr.HasField("t"):
                found.append(attr.t)
            found += list(attr.tensors)
            if attr.HasField("sparse_tensor"):
                found += [attr.sparse_tensor.values, attr.sparse_tensor.indices]
            for sparse in attr.sparse_tensors:
                found += [sparse.values, sparse.indices]
            if attr.HasField("g"):
                found += graph_tensors(attr.g)
            for sub in attr.graphs:
                found += graph_tensors(sub)
        return found

    tensors = graph_tensors(proto.graph)
    for function in proto.functions:
        for node in function.node:
            tensors += attribute_tensors(node.attribute)
    return [
        {e.key: e.value for e in t.external_data}.get("location", "")
        for t in tensors
        if t.data_location == TensorProto.EXTERNAL
    ]


def outside(name: str, location: str) -> TensorProto:
    tensor = numpy_helper.from_array(np.arange(4, dtype=np.float32), name)
    set_external_data(tensor, location=location, offset=0, length=16)
    tensor.ClearField("raw_data")
    tensor.data_location = TensorProto.EXTERNAL
    return tensor


def inside(name: str) -> TensorProto:
    return numpy_helper.from_array(np.ones(3, dtype=np.float32), name)


def sparse(name: str, location: str) -> onnx.SparseTensorProto:
    values = outside(f"{name}_values", location)
    indices = numpy_helper.from_array(np.arange(4, dtype=np.int64), f"{name}_indices")
    return helper.make_sparse_tensor(values, indices, [8])


def everywhere() -> onnx.ModelProto:
    """A model with external tensors in every place the format allows one."""
    inner = helper.make_graph(
        [helper.make_node("Constant", [], ["c"], value=outside("deep", "deep.bin"))],
        "inner",
        [],
        [helper.make_tensor_value_info("c", TensorProto.FLOAT, [4])],
        initializer=[outside("sub_init", "sub.bin"), inside("sub_inline")],
    )
    nodes = [
        helper.make_node("Constant", [], ["a"], value=outside("attr_t", "t.bin")),
        helper.make_node("Constant", [], ["s"], sparse_value=sparse("attr_sparse", "sp.bin")),
        helper.make_node("If", ["cond"], ["out"], then_branch=inner, else_branch=inner),
        helper.make_node("Custom", [], ["x"], domain="shipml.test"),
    ]
    nodes[3].attribute.extend(
        [
            helper.make_attribute("tensors", [outside("list0", "l0.bin"), inside("list1")]),
            helper.make_attribute("graphs", [inner]),
            helper.make_attribute("sparse_tensors", [sparse("sl", "sl.bin")]),
        ]
    )
    graph = helper.make_graph(
        nodes,
        "main",
        [helper.make_tensor_value_info("cond", TensorProto.BOOL, [])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [4])],
        initializer=[outside("w", "weights.bin"), inside("b"), outside("w2", "../up.bin")],
        sparse_initializer=[sparse("si", "sparse_init.bin")],
    )
    function = helper.make_function(
        "shipml.test",
        "F",
        [],
        ["y"],
        [helper.make_node("Constant", [], ["y"], value=outside("fn", "function.bin"))],
        [helper.make_opsetid("", 18)],
    )
    return helper.make_model(graph, functions=[function])


def scan(data: bytes, tmp_path: Path) -> list[str]:
    path = tmp_path / "model.onnx"
    path.write_bytes(data)
    return external_locations(path)


def test_the_field_numbers_are_onnx_own() -> None:
    def number(message: Any, name: str) -> int:
        return int(message.DESCRIPTOR.fields_by_name[name].number)

    assert (
        number(onnx.ModelProto, "graph"),
        number(onnx.ModelProto, "functions"),
    ) == (onnx_wire.MODEL_GRAPH, onnx_wire.MODEL_FUNCTIONS)
    graph = [number(onnx.GraphProto, n) for n in ("node", "initializer", "sparse_initializer")]
    assert graph == [
        onnx_wire.GRAPH_NODE,
        onnx_wire.GRAPH_INITIALIZER,
        onnx_wire.GRAPH_SPARSE_INITIALIZER,
    ]
    assert number(onnx.NodeProto, "attribute") == onnx_wire.NODE_ATTRIBUTE
    assert number(onnx.FunctionProto, "node") == onnx_wire.FUNCTION_NODE
    names = ("t", "g", "tensors", "graphs", "sparse_tensor", "sparse_tensors")
    assert [number(onnx.AttributeProto, n) for n in names] == [
        onnx_wire.ATTRIBUTE_T,
        onnx_wire.ATTRIBUTE_G,
        onnx_wire.ATTRIBUTE_TENSORS,
        onnx_wire.ATTRIBUTE_GRAPHS,
        onnx_wire.ATTRIBUTE_SPARSE_TENSOR,
        onnx_wire.ATTRIBUTE_SPARSE_TENSORS,
    ]
    assert (
        number(onnx.SparseTensorProto, "values"),
        number(onnx.SparseTensorProto, "indices"),
    ) == (onnx_wire.SPARSE_VALUES, onnx_wire.SPARSE_INDICES)
    assert (
        number(onnx.TensorProto, "external_data"),
        number(onnx.TensorProto, "data_location"),
    ) == (onnx_wire.TENSOR_EXTERNAL_DATA, onnx_wire.TENSOR_DATA_LOCATION)
    assert (
        number(onnx.StringStringEntryProto, "key"),
        number(onnx.StringStringEntryProto, "value"),
    ) == (onnx_wire.ENTRY_KEY, onnx_wire.ENTRY_VALUE)
    assert onnx_wire.EXTERNAL == TensorProto.EXTERNAL


def test_every_place_a_tensor_can_be_stored_outside_is_found(tmp_path) -> None:
    data = everywhere().SerializeToString()
    found = scan(data, tmp_path)
    assert sorted(found) == sorted(reference(data))
    assert set(found) == {
        "weights.bin",
        "../up.bin",
        "sparse_init.bin",
        "t.bin",
        "sp.bin",
        "sub.bin",
        "deep.bin",
        "l0.bin",
        "sl.bin",
        "function.bin",
    }


def test_protobuf_merge_rules_are_kept(tmp_path) -> None:
    """A singular message that occurs twice is the merge of both; a scalar, the last."""
    first, second = onnx.ModelProto(), onnx.ModelProto()
    first.graph.initializer.append(outside("a", "a.bin"))
    second.graph.initializer.append(outside("b", "b.bin"))
    # the graph field twice: one graph with both initializers
    merged = first.SerializeToString() + second.SerializeToString()
    assert sorted(scan(merged, tmp_path)) == sorted(reference(merged)) == ["a.bin", "b.bin"]
    # an attribute's tensor in two occurrences: the entries in one, EXTERNAL in the other
    attr = helper.make_attribute("value", TensorProto())
    entry = attr.t.external_data.add()
    entry.key, entry.value = "location", "split.bin"
    tail = onnx.AttributeProto()
    tail.t.data_location = TensorProto.EXTERNAL
    node = _field(0x2A, attr.SerializeToString() + tail.SerializeToString())
    data = _field(0x3A, _field(0x0A, node))  # ModelProto.graph.node
    assert scan(data, tmp_path) == reference(data) == ["split.bin"]
    # data_location twice: the last one counts (EXTERNAL, then DEFAULT: stored inside)
    tensor = outside("x", "x.bin").SerializeToString() + b"\x70\x00"  # field 14 = 0
    data = _field(0x3A, _field(0x2A, tensor))  # ModelProto.graph.initializer
    assert scan(data, tmp_path) == reference(data) == []


def nested(levels: int, twice: bool = False) -> bytes:
    """A model whose external tensor sits ``levels`` subgraphs deep (each level a node's
    attribute's graph: three messages); ``twice``: each attribute also holds an empty
    second ``g``, so every level's graph is a merge of two occurrences."""
    graph = _field(0x2A, outside("deep", "deepest.bin").SerializeToString())
    for _ in range(levels):
        attribute = _field(0x32, graph) + (_field(0x32, b"") if twice else b"")
        graph = _field(0x0A, _field(0x2A, attribute))  # graph.node.attribute.g
    return _field(0x3A, graph)


def test_nesting_is_read_as_deep_as_protobuf_parsers_read_it_and_refused_beyond(
    tmp_path,
) -> None:
    """32 subgraphs deep (98 messages) are read without recursion, as onnx reads them;
    one more level passes protobuf's limit of 100 messages, which onnx (and so
    onnxruntime's parser) refuses too: refused, not walked."""
    data = nested(32)
    assert scan(data, tmp_path) == reference(data) == ["deepest.bin"]
    deeper = nested(33)
    with pytest.raises(DecodeError):
        reference(deeper)
    with pytest.raises(WireError, match="nested more than 100"):
        scan(deeper, tmp_path)
    with pytest.raises(WireError, match="nested more than 100"):
        scan(nested(3_000, twice=True), tmp_path)  # every level a merge: refused at once


def test_a_file_of_countless_tiny_fields_is_refused_in_bounded_time(tmp_path, monkeypatch):
    monkeypatch.setattr(onnx_wire, "MAX_FIELDS", 1000)
    assert scan(b"\x08\x01" * 999, tmp_path) == []  # unknown varints: skipped
    with pytest.raises(WireError, match="more than 1,000 protobuf fields"):
        scan(b"\x08\x01" * 1001, tmp_path)


@pytest.mark.parametrize(
    "data",
    [
        b"\x3a\x05\x2a",  # a length past the end
        b"\x08" + b"\xff" * 11,  # a varint over ten bytes
        b"\x0b",  # wire type 3 (a group)
        b"\x0e",  # wire type 6
        b"\x00\x00",  # field number 0
        b"\x3a\x04\x2a\x02\x6a\x05",  # a tensor's external data cut short
    ],
)
def test_bytes_that_are_not_protobuf_are_a_wire_error(tmp_path, data) -> None:
    with pytest.raises(WireError):
        scan(data, tmp_path)


def test_corrupted_models_are_read_as_onnx_reads_them_or_refused(tmp_path) -> None:
    """Random byte flips, cuts and insertions in a real model: the scanner either agrees
    with onnx or refuses the file (WireError); it never misses a location onnx sees."""
    data = everywhere().SerializeToString()
    rng = random.Random(6962)
    agreed = refused = 0
    for _ in range(2000):
        mutated = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            at = rng.randrange(len(mutated))
            kind = rng.random()
            if kind < 0.6:
                mutated[at] = rng.randrange(256)
            elif kind < 0.8:
                del mutated[at : at + rng.randint(1, 8)]
            else:
                mutated[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 4)))
        try:
            expected = reference(bytes(mutated))
        except (DecodeError, RuntimeError, ValueError):
            expected = None
        try:
            found = scan(bytes(mutated), tmp_path)
        except WireError:
            refused += 1
            continue
        if expected is not None:
            assert sorted(found) == sorted(expected)
            agreed += 1
    assert agreed > 100 and refused > 100  # both paths were exercised
