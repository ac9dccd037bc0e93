"""A custom layer of your own: a PyTorch op that ONNX cannot export, rebuilt with netdef anyway."""
import numpy as np
import torch

from netdef import functional as F
from netdef.engine import BuildSettings
from netdef.executor import execute
from netdef.network import Network
from netdef.nn import BatchNorm2d, Conv2d, Module
from netdef.plugins import CustomLayer, CustomModule, Field, register
from netdef.verify import verify_network


# --- PyTorch: a custom op (torch.library) without an ONNX symbolic, in a small model ----------------------
@torch.library.custom_op("example::soft_clip", mutates_args=())
def soft_clip(x: torch.Tensor, limit: float) -> torch.Tensor:
    return limit * torch.tanh(x / limit)


@soft_clip.register_fake
def _(x: torch.Tensor, limit: float) -> torch.Tensor:
    return torch.empty_like(x)


class SoftClip(torch.nn.Module):
    def __init__(self, limit: float) -> None:
        super().__init__()
        self.limit = limit

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return soft_clip(x, self.limit)


class TinyNet(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn = torch.nn.BatchNorm2d(8)
        self.clip = SoftClip(limit=2.0)
        self.head = torch.nn.Conv2d(8, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.clip(self.bn(self.conv(x))))


# --- netdef: describe the op once ... ----------------------------------------------------------------------
@register
class SoftClipLayer(CustomLayer):
    """limit * tanh(x / limit), a smooth clip to (-limit, limit)."""

    name = "SoftClip"
    version = "1"
    limit = Field(float, 1.0)

    def reference(self, fields, x):  # the math on torch tensors: netdef's executor and verification run this
        return soft_clip(x, fields.limit)

    def native(self, net, fields, x):  # the same math as standard TensorRT layers (every binding has them)
        return F.mul(F.tanh(F.div(x, fields.limit)), fields.limit)


# --- ... and use it in a network class with the PyTorch model's attribute names ----------------------------
class TinyNetDef(Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn = BatchNorm2d(8)
        self.clip = CustomModule(SoftClipLayer, limit=2.0)
        self.head = Conv2d(8, 4, 1)

    def forward(self, x):
        return self.head(self.clip(self.bn(self.conv(x))))


def build_and_verify(model: TinyNet, x: np.ndarray):
    """Engine plan, netdef's execution of the definition, and the layer-by-layer check against `model`."""
    weights = {name: value.detach().numpy() for name, value in model.state_dict().items()}
    with Network("tinynet") as net:
        tiny = TinyNetDef().load_weights(weights, origin="TinyNet state dict")
        net.mark_output(tiny(net.add_input("input", (-1, 3, *x.shape[2:]))), "output")
    plan = net.build(BuildSettings(batch=(1, x.shape[0], 8), progress=False))  # lowering "auto"
    outputs = execute(net.definition, {"input": x})
    report = verify_network(net, model, x)
    return plan, outputs, report


if __name__ == "__main__":
    model = TinyNet().eval()
    x = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
    try:
        torch.onnx.export(model, (torch.from_numpy(x),), "tinynet.onnx")
    except Exception as exc:
        print(f"torch.onnx.export fails: {type(exc).__name__}")
    plan, outputs, report = build_and_verify(model, x)
    print(f"engine: {len(plan.data)} bytes, output {tuple(outputs['output'].shape)}")
    print(report.table())
