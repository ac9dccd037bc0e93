"""Which Q/DQ placement does a TensorRT build reject? Builds INT8 variants of a small network and says
PASS/FAIL for each (no torch, no calibration: every activation gets the same amax).

    PYTHONPATH=. python bench/int8_probe.py [--arch resnet18] [--size 64]

Variants: the full Q/DQ plan; without the residual-add sites; convolutions only in the first stage; a
single conv + ReLU; and each of those with INT8 alone (no FP16 builder flag) where the binding is weakly
typed. Used to chase TensorRT 8.6's "All of the candidates were removed" on netdef's INT8 ResNet.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import netdef.engine as engine  # noqa: E402
import netdef.quantize.qdq as qdq  # noqa: E402
from netdef import nn  # noqa: E402
from netdef.engine import BuildError, BuildSettings  # noqa: E402
from netdef.network import Network  # noqa: E402
from netdef.quantize import apply  # noqa: E402


def random_resnet_weights(arch: str) -> dict[str, np.ndarray]:
    """Shapes from the netdef ResNet definition itself, values random (BN statistics realistic)."""
    from networks.resnet import random_weights

    return random_weights(arch, num_classes=10)


def uniform_amax(make_net) -> dict[str, float]:
    """amax 4.0 for every tensor the Q/DQ plan of the network's FP32 definition quantizes."""
    return {name: 4.0 for name in qdq.plan_qdq(make_net("fp32", None).definition).activation_tensors}


def site_filter(keep):
    original = qdq.plan_qdq

    def planned(definition, skip=()):
        plan = original(definition, skip)
        plan.sites = [s for s in plan.sites if keep(s, definition)]
        return plan

    return planned


def build(make_net, keep=lambda s, d: True, flags=None) -> str:
    saved_plan, saved_flags = qdq.plan_qdq, engine.weak_precision_flag_names
    qdq.plan_qdq = site_filter(keep)
    if flags is not None:
        engine.weak_precision_flag_names = lambda precision, constrained: list(flags)
    try:
        net = make_net("int8", uniform_amax(make_net))
        plan = net.build(BuildSettings(precision="int8", optimization_level=0, progress=False))
        return f"PASS ({len(plan.data) / 1e6:.1f} MB, {net.meta['int8']['quantized_tensors']} Q/DQ sites)"
    except BuildError as exc:
        return "FAIL " + str(exc).splitlines()[-1][:160]
    finally:
        qdq.plan_qdq, engine.weak_precision_flag_names = saved_plan, saved_flags


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", default="resnet18")
    ap.add_argument("--size", type=int, default=64)
    args = ap.parse_args()
    from networks.resnet import ResNet

    model = ResNet(random_resnet_weights(args.arch))

    def resnet(precision, amax):
        return model.define(precision=precision, input_size=(args.size, args.size), calibration=amax)

    def conv_relu(precision, amax):
        net = Network("conv_relu", precision)
        with net:
            conv = nn.Conv2d(16, 32, 3, padding=1)
            rng = np.random.default_rng(1)
            conv.load_weights({"weight": rng.standard_normal((32, 16, 3, 3)).astype(np.float32) / 12,
                               "bias": rng.standard_normal(32).astype(np.float32)})
            relu = nn.ReLU()
            relu.assign_paths("relu")
            net.mark_output(relu(conv(net.add_input("input", (-1, 16, 32, 32)))), "out")
        if precision == "int8":
            apply(net, amax)
        return net

    def layer_type(definition, name):
        for i in range(definition.num_layers):
            if definition.get_layer(i).name == name:
                return definition.get_layer(i).type.name
        return None

    def not_add(site, definition):
        return layer_type(definition, site.layer) != "ELEMENTWISE"

    def first_stage(site, definition):
        return site.layer.startswith(("conv1", "layer1.0.conv1"))

    flag_sets = [None] + ([["INT8"]] if not engine.shim.features().strongly_typed else [])
    for flags in flag_sets:
        tag = "" if flags is None else " [INT8 flag only]"
        print(f"conv+relu{tag}: {build(conv_relu, flags=flags)}", flush=True)
        print(f"{args.arch} first convs only{tag}: {build(resnet, first_stage, flags)}", flush=True)
        print(f"{args.arch} without residual-add sites{tag}: {build(resnet, not_add, flags)}", flush=True)
        print(f"{args.arch} full plan{tag}: {build(resnet, flags=flags)}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
