"""Compile src/shipml/serving/grpc_predict_v2.proto into src/shipml/serving/grpc_descriptor.py:
the serialized FileDescriptorProto that shipml.serving.grpc loads into a private descriptor
pool (generated *_pb2 modules register in protobuf's default pool, where tritonclient's and
KServe's copies of the same messages would clash). Needs grpcio-tools (a dev dependency).

    .venv/bin/python scripts/grpc_descriptor.py [OUTPUT]

tests/serving/test_grpc.py regenerates it and compares it with the shipped file.
"""

from __future__ import annotations

import base64
import sys
import tempfile
from pathlib import Path

from google.protobuf import descriptor_pb2
from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO = ROOT / "src/shipml/serving/grpc_predict_v2.proto"
HEADER = '''"""The V2 gRPC service's FileDescriptorProto (package ``inference``), compiled from
grpc_predict_v2.proto by scripts/grpc_descriptor.py. Do not edit: regenerate."""

import base64

'''


def compile_proto() -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "set.pb"
        code = protoc.main(
            ["protoc", f"-I{PROTO.parent}", f"--descriptor_set_out={out}", PROTO.name]
        )
        if code != 0:
            raise SystemExit(f"protoc failed with {code}")
        files = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes()).file
    (only,) = files
    return only.SerializeToString(deterministic=True)


def module_text() -> str:
    text = base64.b64encode(compile_proto()).decode()
    lines = [f'    "{text[i : i + 88]}"\n' for i in range(0, len(text), 88)]
    return HEADER + "FILE = base64.b64decode(\n" + "".join(lines) + ")\n"


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else PROTO.with_name("grpc_descriptor.py")
    target.write_text(module_text())
    print(f"wrote {target}")
