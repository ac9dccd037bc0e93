"""ResNet-18/34/50/101/152: the PyTorch reference and the netdef definition side by side.

Both sides are built by the same helpers (`basic_layers`, `bottleneck_layers`, `resnet_layers`) with the
module namespace as argument (`torch.nn` or `netdef.nn`), so attribute names - and with them state-dict keys,
HDF5 groups and TensorRT layer names - are identical by construction and match torchvision's: a torchvision
checkpoint exports and builds as is. The forwards are written once too (`basic_forward`, ...): netdef tensors
add with `+` as torch's do. The torch classes live in networks.resnet_torch, imported on first use: defining
and building needs numpy, h5py and TensorRT only. BatchNorms fold into their convs (conv1/bn1 names, the
downsample Sequential), as netdef.nn.fold pairs them.
"""
from __future__ import annotations

import os
from types import SimpleNamespace
from typing import Any, Callable, Mapping

import numpy as np

import netdef.functional as F
import netdef.nn as nn
from netdef.network import Network
from netdef.preprocess import IMAGENET, IMAGENET_MEAN, IMAGENET_STD
from networks import register
from networks.base import NetworkModel, side_class

# arch -> (block kind, blocks per stage), as torchvision defines them
ARCHS: dict[str, tuple[str, tuple[int, int, int, int]]] = {
    "resnet18": ("basic", (2, 2, 2, 2)),
    "resnet34": ("basic", (3, 4, 6, 3)),
    "resnet50": ("bottleneck", (3, 4, 6, 3)),
    "resnet101": ("bottleneck", (3, 4, 23, 3)),
    "resnet152": ("bottleneck", (3, 8, 36, 3)),
}
EXPANSION = {"basic": 1, "bottleneck": 4}
DEFAULT_INPUT_SIZE = (224, 224)


# --- architecture and forwards, written once: each side adds its module base and `ns` (netdef.nn / torch.nn) ----
def _downsample(ns: Any, inplanes: int, outplanes: int, stride: int) -> Any:
    if stride == 1 and inplanes == outplanes:
        return None
    return ns.Sequential(ns.Conv2d(inplanes, outplanes, 1, stride=stride, bias=False), ns.BatchNorm2d(outplanes))


class BasicBlockLayers:
    ns: Any
    residual: Callable[[Any, Any], Any]  # out + identity; netdef's marks identity as the skip (INT8: docs/int8.md)

    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        ns = self.ns
        self.conv1 = ns.Conv2d(inplanes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = ns.BatchNorm2d(planes)
        self.relu = ns.ReLU(inplace=True)
        self.conv2 = ns.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = ns.BatchNorm2d(planes)
        self.downsample = _downsample(ns, inplanes, planes, stride)

    def forward(self, x: Any) -> Any:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(self.residual(out, identity))


class BottleneckLayers:
    ns: Any
    residual: Callable[[Any, Any], Any]

    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        ns = self.ns
        self.conv1 = ns.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = ns.BatchNorm2d(planes)
        self.conv2 = ns.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)  # torchvision v1.5 stride
        self.bn2 = ns.BatchNorm2d(planes)
        self.conv3 = ns.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = ns.BatchNorm2d(planes * 4)
        self.relu = ns.ReLU(inplace=True)
        self.downsample = _downsample(ns, inplanes, planes * 4, stride)

    def forward(self, x: Any) -> Any:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(self.residual(out, identity))


class ResNetLayers:
    ns: Any
    blocks: dict[str, type]  # "basic" / "bottleneck" -> the side's block class

    def __init__(self, kind: str, layers: tuple[int, ...], num_classes: int = 1000) -> None:
        super().__init__()
        ns, block_cls = self.ns, self.blocks[kind]
        self.conv1 = ns.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = ns.BatchNorm2d(64)
        self.relu = ns.ReLU(inplace=True)
        self.maxpool = ns.MaxPool2d(kernel_size=3, stride=2, padding=1)
        inplanes = 64
        for i, (planes, count) in enumerate(zip((64, 128, 256, 512), layers)):
            stage = []
            for j in range(count):
                stage.append(block_cls(inplanes, planes, (1 if i == 0 else 2) if j == 0 else 1))
                inplanes = planes * EXPANSION[kind]
            setattr(self, f"layer{i + 1}", ns.Sequential(*stage))
        self.avgpool = ns.AdaptiveAvgPool2d((1, 1))
        self.fc = ns.Linear(512 * EXPANSION[kind], num_classes)

    def flatten(self, x: Any) -> Any:
        raise NotImplementedError  # the side's flatten(x, 1)

    def forward(self, x: Any) -> Any:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(self.flatten(self.avgpool(x)))


def side_classes(base: type, ns: Any, flatten: Callable[..., Any], module: str,
                 residual: Callable[[Any, Any], Any]) -> SimpleNamespace:
    """BasicBlock, Bottleneck and ResNet on one side: the classes above on `base` (netdef's or torch's Module)
    with that side's namespace `ns`, flatten function and residual add `residual(out, identity)`."""
    def make(name: str, layers: type, **attrs: Any) -> type:
        return side_class(name, layers, base, module, ns=ns, **attrs)

    add = {"residual": lambda self, out, identity: residual(out, identity)}
    blocks = {"basic": make("BasicBlock", BasicBlockLayers, **add),
              "bottleneck": make("Bottleneck", BottleneckLayers, **add)}
    resnet = make("ResNet", ResNetLayers, blocks=blocks, flatten=lambda self, x: flatten(x, 1))
    return SimpleNamespace(BasicBlock=blocks["basic"], Bottleneck=blocks["bottleneck"], ResNet=resnet)


# --- netdef definition ---------------------------------------------------------------------------------
NETDEF = side_classes(nn.Module, nn, F.flatten, __name__,
                      residual=lambda out, identity: F.add(out, identity, skip=1))  # identity: the skip
ResNetModule = NETDEF.ResNet


# --- PyTorch reference: networks.resnet_torch (torchvision's modules and names), imported on first use -----
def torch_resnet(arch: str, num_classes: int = 1000, seed: int | None = None) -> Any:
    """An untrained torch ResNet of `arch` with torchvision's init (seeded when `seed` is given), eval mode."""
    import torch

    from networks.resnet_torch import TorchResNet

    kind, layers = _arch(arch)

    def make() -> Any:
        model = TorchResNet(kind, layers, num_classes)
        for m in model.modules():  # torchvision's initialisation
            if isinstance(m, torch.nn.Conv2d):
                torch.nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        return model.eval()

    if seed is None:
        return make()
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return make()


def resnet18_reference(**kw: Any) -> Any:
    return torch_resnet("resnet18", **kw)


def resnet34_reference(**kw: Any) -> Any:
    return torch_resnet("resnet34", **kw)


def resnet50_reference(**kw: Any) -> Any:
    return torch_resnet("resnet50", **kw)


def resnet101_reference(**kw: Any) -> Any:
    return torch_resnet("resnet101", **kw)


def resnet152_reference(**kw: Any) -> Any:
    return torch_resnet("resnet152", **kw)


def random_bn_init(module: Any, seed: int = 0) -> Any:
    """Give every BatchNorm realistic inference statistics (trained-looking, never identity or zeros).

    running_var in [0.5, 2], running_mean ~ N(0, 0.2), weight in [0.5, 1.5], bias ~ N(0, 0.2).
    """
    import torch

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=gen) * 0.2)
                m.running_var.copy_(torch.rand(n, generator=gen) * 1.5 + 0.5)
                if m.weight is not None:
                    m.weight.copy_(torch.rand(n, generator=gen) + 0.5)
                    m.bias.copy_(torch.randn(n, generator=gen) * 0.2)
    return module


def random_weights(arch: str, num_classes: int = 1000, seed: int = 0) -> dict[str, np.ndarray]:
    """Random weights by name for `arch` without torch (benchmarks on the GPU machine's TensorRT Python):
    shapes from the netdef definition, convolutions scaled by fan-in, BatchNorm statistics as random_bn_init."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, p in ResNetModule(*_arch(arch), num_classes).named_parameters():
        if name.endswith("running_var"):
            out[name] = rng.uniform(0.5, 2.0, p.shape).astype(np.float32)
        elif name.endswith("weight") and len(p.shape) == 1:
            out[name] = rng.uniform(0.5, 1.5, p.shape).astype(np.float32)
        else:
            fan_in = int(np.prod(p.shape[1:])) if len(p.shape) > 1 else 1
            out[name] = (rng.standard_normal(p.shape) / np.sqrt(fan_in)).astype(np.float32)
    return out


# --- the user-facing class ---------------------------------------------------------------------------------
def _arch(arch: str) -> tuple[str, tuple[int, int, int, int]]:
    try:
        return ARCHS[arch]
    except KeyError:
        raise ValueError(f"unknown ResNet arch {arch!r}; expected one of {', '.join(ARCHS)}") from None


def infer_arch(keys: Any, origin: str = "weights") -> str:
    """The ResNet depth from weight names: block kind from `layer1.0.conv3`, block counts per stage."""
    keys = set(keys)
    kind = "bottleneck" if "layer1.0.conv3.weight" in keys else "basic"
    counts = []
    for stage in range(1, 5):
        blocks = {k.split(".")[1] for k in keys if k.startswith(f"layer{stage}.")}
        counts.append(len(blocks))
    for arch, spec in ARCHS.items():
        if spec == (kind, tuple(counts)):
            return arch
    raise ValueError(f"{origin}: weights do not look like a torchvision ResNet ({kind} blocks, {counts} per stage)")


@register(*ARCHS)
class ResNet(NetworkModel):
    """A torchvision ResNet rebuilt with netdef: input "input" (N,3,H,W), output "logits" (N, classes)."""

    default_input_shape = (1, 3, *DEFAULT_INPUT_SIZE)  # what `netdef export` records and samples with
    mean, std = IMAGENET_MEAN, IMAGENET_STD  # what `netdef export` records
    pixels = IMAGENET

    def __init__(self, weights: Mapping[str, Any], path: str | os.PathLike | None = None,
                 arch: str | None = None) -> None:
        super().__init__(weights, path)
        origin = os.fspath(path) if path is not None else "weights"
        attrs = getattr(weights, "attrs", {}) or {}
        self.arch = arch or (attrs.get("arch") if attrs.get("arch") in ARCHS else None) \
            or infer_arch(weights.keys(), origin)
        self.kind, self.layers = _arch(self.arch)
        if "fc.weight" not in weights:
            raise ValueError(f"{origin}: no fc.weight, cannot tell the number of classes of this {self.arch}")
        shape_of = getattr(weights, "shape_of", None)  # WeightsFile reads a shape without the data
        self.num_classes = int((shape_of("fc.weight") if shape_of else np.shape(weights["fc.weight"]))[0])

    @classmethod
    def torch_reference(cls, arch: str, num_classes: int = 1000, seed: int | None = None) -> Any:
        """An untrained torch module of `arch` (what `netdef export` instantiates for a checkpoint)."""
        return torch_resnet(arch, num_classes, seed)

    def make_module(self, input_size: Any = None) -> ResNetModule:
        return ResNetModule(self.kind, self.layers, self.num_classes)

    def define(self, precision: str = "fp32", input_size: tuple[int, int] | None = None, fp16_io: bool = False,
               calibration: Any = None, skip: tuple[str, ...] = (), input_dtype: str = "float32",
               **options: Any) -> Network:
        if options:
            raise TypeError(f"{self.arch}: unknown options {', '.join(options)}")
        height, width = input_size or DEFAULT_INPUT_SIZE
        model = self.module()
        int8 = self.int8_settings(precision, calibration, skip, (height, width))
        with Network(self.arch, precision, fp16_io, int8=int8) as net:
            x = self.image_input(net, (-1, 3, height, width), input_dtype)
            net.mark_output(model(x), "logits")
        net.meta.update({"arch": self.arch, "input_size": [height, width], "num_classes": self.num_classes})
        return net

    def reference(self) -> Any:
        """The torch module with these weights (float32, eval mode)."""
        return self.load_reference(torch_resnet(self.arch, self.num_classes))

    def sample_input(self, batch: int = 1, input_size: tuple[int, int] | None = None, seed: int = 0) -> np.ndarray:
        """A normalized random image batch (N, 3, H, W), float32."""
        height, width = input_size or DEFAULT_INPUT_SIZE
        return np.random.default_rng(seed).standard_normal((batch, 3, height, width)).astype(np.float32)

