"""ResNet family: torchvision names, depth from the weights, builds of all depths, numbers against PyTorch."""
from __future__ import annotations


import numpy as np
import pytest
import torch

import networks
from netdef.engine import BuildSettings
from netdef.module import WeightsError
from networks.resnet import ARCHS, ResNet, ResNetModule, infer_arch, random_bn_init, torch_resnet

torch.set_num_threads(2)
SIZE = (64, 64)
TOLERANCE = {"fp32": 1e-5, "fp16": 5e-3}


def numpy_state(model: torch.nn.Module) -> dict[str, np.ndarray]:
    return {k: v.numpy() for k, v in model.state_dict().items()}


@pytest.fixture(scope="module")
def trained_looking() -> dict[str, torch.nn.Module]:
    """Seeded random-init ResNet-18/50 with realistic BatchNorm statistics and 10 classes."""
    return {arch: random_bn_init(torch_resnet(arch, num_classes=10, seed=1), seed=2)
            for arch in ("resnet18", "resnet50")}


def test_state_dict_names_are_torchvisions() -> None:
    r18, r50 = torch_resnet("resnet18").state_dict(), torch_resnet("resnet50").state_dict()
    assert len(r18) == 122 and len(r50) == 320  # torchvision's counts, num_batches_tracked included
    for key, shape in (("conv1.weight", (64, 3, 7, 7)), ("layer1.0.downsample.0.weight", (256, 64, 1, 1)),
                       ("layer4.2.bn3.running_var", (2048,)), ("fc.weight", (1000, 2048))):
        assert tuple(r50[key].shape) == shape
    assert "layer2.0.downsample.1.running_mean" in r18 and "layer1.0.downsample.0.weight" not in r18


@pytest.mark.parametrize("arch", list(ARCHS))
def test_netdef_module_has_the_reference_parameter_names(arch: str) -> None:
    kind, layers = ARCHS[arch]
    netdef_names = {k: p.shape for k, p in ResNetModule(kind, layers).named_parameters()}
    reference = {k: tuple(v.shape) for k, v in torch_resnet(arch).state_dict().items()
                 if not k.endswith("num_batches_tracked")}
    assert netdef_names == reference
    assert infer_arch(reference) == arch


def test_registered_for_every_depth() -> None:
    assert all(networks.get(arch) is ResNet for arch in ARCHS)


def random_weights(arch: str, num_classes: int = 10, seed: int = 0) -> dict[str, np.ndarray]:
    """Random numpy weights by name (no torch init: fast for the deep ones), realistic BN statistics."""
    kind, layers = ARCHS[arch]
    rng = np.random.default_rng(seed)
    out = {}
    for name, p in ResNetModule(kind, layers, num_classes).named_parameters():
        if name.endswith("running_var"):
            out[name] = rng.uniform(0.5, 2.0, p.shape)
        elif name.endswith(("bn1.weight", "bn2.weight", "bn3.weight")) or name.endswith("downsample.1.weight"):
            out[name] = rng.uniform(0.5, 1.5, p.shape)
        else:
            out[name] = rng.standard_normal(p.shape) * 0.05
    return {k: v.astype(np.float32) for k, v in out.items()}


@pytest.mark.slow
@pytest.mark.parametrize("arch", list(ARCHS))
def test_every_depth_builds_and_serializes(arch: str) -> None:
    model = ResNet(random_weights(arch))
    assert model.arch == arch and model.num_classes == 10
    for precision in ("fp32", "fp16"):
        plan = model.build(precision=precision, input_size=SIZE,
                           settings=BuildSettings(precision=precision, batch=(1, 2, 4), progress=False))
        assert len(plan.data) > 1_000_000
        assert [o["name"] for o in plan.meta["outputs"]] == ["logits"]
        assert plan.meta["outputs"][0]["max"] == [4, 10] and plan.meta["inputs"][0]["opt"] == [2, 3, *SIZE]
        assert plan.meta["arch"] == arch and plan.meta["precision"] == precision


@pytest.mark.parametrize("arch", ["resnet18", "resnet50"])
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_matches_pytorch_layer_by_layer(trained_looking: dict, arch: str, precision: str) -> None:
    from netdef.verify import verify_network

    reference = trained_looking[arch]
    model = ResNet(numpy_state(reference))
    net = model.define(precision, SIZE)
    tolerance = TOLERANCE[precision]
    for batch, seed in ((1, 11), (3, 12)):
        report = verify_network(net, reference, model.sample_input(batch, SIZE, seed=seed), tolerance=tolerance)
        where = f"{arch} {precision} batch {batch}"
        assert [c.name for c in report.outputs] == ["logits"] and report.ok, f"{where}: {report.first_failure}"
        assert len(report.layers) > 40 and not report.unmatched, f"{where}: unmatched {report.unmatched}"
        assert report.worst.rel <= tolerance, f"{where}: worst layer {report.worst}"
        assert report.worst.rel > 0  # really computed in the network's precision, not copied through


def test_reference_carries_the_same_weights(trained_looking: dict) -> None:
    reference = trained_looking["resnet18"]
    rebuilt = ResNet(numpy_state(reference)).reference()
    x = torch.randn(2, 3, *SIZE)
    with torch.no_grad():
        assert torch.equal(rebuilt(x), reference(x))


def test_from_hdf5_reads_depth_and_classes(tmp_path, trained_looking: dict) -> None:
    from weights_export.hdf5 import write_weights

    path = tmp_path / "r18.h5"
    write_weights(path, numpy_state(trained_looking["resnet18"]), root_attrs={"arch": "resnet18"})
    model = ResNet.from_hdf5(path)
    assert (model.arch, model.num_classes) == ("resnet18", 10)
    net = model.define("fp32", SIZE)
    assert net.definition.get_output(0).name == "logits" and tuple(net.definition.get_input(0).shape) == (-1, 3, 64, 64)
    assert net.definition.get_layer(0).name == "conv1"  # layer names are the module paths


def test_fp16_io_option_makes_half_inputs_and_outputs() -> None:
    net = ResNet(random_weights("resnet18")).define("fp16", SIZE, fp16_io=True)
    half = net.trt.DataType.HALF
    assert net.definition.get_input(0).dtype == half and net.definition.get_output(0).dtype == half


def test_bad_weights_are_all_listed_in_one_error(trained_looking: dict) -> None:
    state = numpy_state(trained_looking["resnet18"])
    del state["layer1.0.conv1.weight"]
    state["layer2.0.bn1.running_var"] = state["layer2.0.bn1.running_var"][:5]
    state["layer9.extra"] = np.zeros(3, np.float32)
    with pytest.raises(WeightsError) as info:
        ResNet(state, arch="resnet18").define("fp32", SIZE)
    message = str(info.value)
    assert "missing: layer1.0.conv1.weight" in message and "layer2.0.bn1.running_var" in message
    assert "unexpected: layer9.extra" in message


def test_unknown_shapes_are_refused() -> None:
    with pytest.raises(ValueError, match="do not look like a torchvision ResNet"):
        ResNet({"layer1.0.conv1.weight": np.zeros((1, 1, 1, 1)), "fc.weight": np.zeros((2, 2))})
