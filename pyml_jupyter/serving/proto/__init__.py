"""The Open Inference Protocol's gRPC definition (``grpc_predict_v2.proto``) and the modules protoc generates
from it; regenerate them with ``python scripts/generate_grpc_stubs.py`` after editing the .proto."""
