"""Stand-ins for TensorRT bindings that are not installed here (8.6 and 11), for the shim's decision paths."""
from __future__ import annotations

import enum
import types


def _enum(name: str, members: list[str]) -> type:
    return enum.IntEnum(name, {m: i for i, m in enumerate(members)})


def make_module(generation: str) -> types.SimpleNamespace:
    """A module-like namespace with the attributes the shim probes, shaped like TensorRT 8.6 or 11."""
    if generation == "8.6":
        creation = _enum("NetworkDefinitionCreationFlag", ["EXPLICIT_BATCH", "EXPLICIT_PRECISION"])
        flags = _enum("BuilderFlag", ["FP16", "INT8", "DEBUG", "GPU_FALLBACK", "REFIT", "DISABLE_TIMING_CACHE",
                                      "TF32", "SPARSE_WEIGHTS", "SAFETY_SCOPE", "OBEY_PRECISION_CONSTRAINTS",
                                      "PREFER_PRECISION_CONSTRAINTS"])
        network_methods = ["add_plugin_v2", "add_nms", "add_quantize", "add_dequantize", "add_cast"]
        version, extra = "8.6.0", {}
    elif generation == "11":
        creation = _enum("NetworkDefinitionCreationFlag", ["STRONGLY_TYPED"])
        flags = _enum("BuilderFlag", ["DEBUG", "GPU_FALLBACK", "REFIT", "TF32"])
        network_methods = ["add_plugin_v2", "add_plugin_v3", "add_nms", "add_quantize", "add_dequantize", "add_cast"]
        version = "11.0.0"
        extra = {"IPluginV3": type("IPluginV3", (), {}), "IPluginCreatorV3One": type("C", (), {}),
                 "IProgressMonitor": type("IProgressMonitor", (), {})}
    else:
        raise ValueError(generation)
    network = type("INetworkDefinition", (), {m: (lambda self, *a: None) for m in network_methods})
    config = type("IBuilderConfig", (), {"builder_optimization_level": 3, "progress_monitor": None,
                                         "set_tactic_sources": lambda self, s: None})
    tactic = _enum("TacticSource", ["CUBLAS", "CUBLAS_LT", "CUDNN", "EDGE_MASK_CONVOLUTIONS", "JIT_CONVOLUTIONS"])
    layer_type = _enum("LayerType", ["CONVOLUTION", "ACTIVATION", "QUANTIZE", "DEQUANTIZE"])
    mod = types.SimpleNamespace(__name__="tensorrt", __version__=version, NetworkDefinitionCreationFlag=creation,
                                BuilderFlag=flags, INetworkDefinition=network, IBuilderConfig=config,
                                TacticSource=tactic, LayerType=layer_type, **extra)
    return mod
