"""Serving engines with NVIDIA Triton Inference Server.

`netdef serve` runs the real Triton server through PyTriton with netdef's runtime as each model instance's
function (server.py; the instance function is batching.py, the instance placement placement.py, the server
process's environment environment.py). `netdef triton-repo` writes a model repository for Triton's own
TensorRT backend (repository.py). Both describe an engine the same way (signature.py).
PyTriton and tritonclient come with the `serve` extra and are imported only when a server starts.
"""
from netdef.serve.signature import ModelSignature, SignatureError, TensorSignature, model_name

__all__ = ["ModelSignature", "SignatureError", "TensorSignature", "model_name"]
