"""Regenerate the gRPC modules of the serving runtime from pyml_jupyter/serving/proto/grpc_predict_v2.proto.

    pip install grpcio-tools          # same minor version as the grpcio the runtime pins
    python scripts/generate_grpc_stubs.py

protoc writes ``grpc_predict_v2_pb2.py`` (messages), ``.pyi`` (types) and ``grpc_predict_v2_pb2_grpc.py``
(service) beside the .proto. One change is made to the messages module: it registers its descriptors in a
pool of its own instead of protobuf's default pool, because the protocol's names (``inference.*``) are also
registered by other clients of the protocol (tritonclient's ``service_pb2``), and protobuf refuses the same
symbol from two files in one pool. The wire format does not depend on the pool.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO = Path("pyml_jupyter/serving/proto/grpc_predict_v2.proto")
DEFAULT_POOL = "DESCRIPTOR = _descriptor_pool.Default().AddSerializedFile("
OWN_POOL = ("# A pool of its own: tritonclient registers the same protocol names in the default pool.\n"
            "DESCRIPTOR = _descriptor_pool.DescriptorPool().AddSerializedFile(")


def main() -> int:
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", "-I", ".", "--python_out=.", "--pyi_out=.",
                    "--grpc_python_out=.", str(PROTO)], cwd=ROOT, check=True)
    messages = ROOT / PROTO.with_name("grpc_predict_v2_pb2.py")
    text = messages.read_text()
    if DEFAULT_POOL not in text:
        raise SystemExit(f"{messages}: protoc's output changed; update {Path(__file__).name}")
    messages.write_text(text.replace(DEFAULT_POOL, OWN_POOL))
    print(f"regenerated {PROTO.parent}/grpc_predict_v2_pb2*.py")
    return 0


if __name__ == "__main__":
    sys.exit(main())
