"""docs/int8.md's placement rules, checked on definitions: the placement report (where TensorRT must requantize)
on hand-made Q/DQ graphs, then on the INT8 definitions of ResNet and YOLOv4(-tiny) as the network files emit them;
scale groups (union-find, group amax from merged histograms), and the sensitivity ranking behind
`netdef calibrate --sensitivity K`."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from netdef.engine import create_builder, create_network
from netdef.quantize import calibrate
from netdef.quantize.groups import ScaleGroups, merge_stats
from netdef.quantize.placement import check_placement, commuting_groups
from netdef.quantize.sensitivity import SensitivityResult, rank_sites, site_of
from netdef.quantize.stats import TensorStats
from tests.test_quantize_policy import STRONG, Keep, _const, _named, _qdq, trt


def _quantized_conv(net, keep, x, scale, name, qdq_name=None):
    """conv(DQ(Q(x))) with per-channel quantized weights, like netdef's Q/DQ pass writes it."""
    _, dq = _qdq(net, keep, x, scale, 0, qdq_name or f"{name}/in")
    w = keep(np.random.default_rng().standard_normal((4, int(x.shape[1]), 1, 1)).astype(np.float32))
    _, wdq = _qdq(net, keep, _const(net, keep, w, f"{name}/w"), np.full(4, 0.01, np.float32), 0, f"{name}/wq")
    layer = net.add_convolution_nd(dq, 4, (1, 1), trt.Weights(trt.DataType.FLOAT), trt.Weights())
    layer.set_input(1, wdq)
    return _named(layer, name)


def _input(net, channels=4):
    return net.add_input("input", trt.DataType.FLOAT, (-1, channels, 8, 8))


def test_skip_read_in_float_needs_a_standalone_quantize_and_its_skip_qdq_removes_it() -> None:
    """The residual rule: the add's skip input gets the Q/DQ its conv consumer already has (one per tensor)."""
    for skip_quantized in (False, True):
        keep = Keep()
        net = create_network(create_builder())
        relu = _named(net.add_activation(_input(net), trt.ActivationType.RELU), "relu")
        conv = _quantized_conv(net, keep, relu, 0.05, "conv", qdq_name="relu")
        skip = relu
        if skip_quantized:  # the same tensor's Q/DQ (here a second pair with the same scale)
            _, skip = _qdq(net, keep, relu, 0.05, 0, "relu/skip")
        net.mark_output(_named(net.add_elementwise(conv, skip, trt.ElementWiseOperation.SUM), "add"))
        report = check_placement(net)
        assert report.int8_layers() == ["conv"]
        if skip_quantized:
            assert report.requantized == [] and report.dequantized_inputs("add") == [1]
        else:
            [r] = report.requantized
            assert (r.tensor, r.kind, r.float_readers, r.scales) == ("relu", "float+int8", ["add"], [pytest.approx(0.05)])


def _concat_net(scale_a: float, scale_concat: float):
    """a = relu(x) feeds a quantized conv and, with b = sigmoid(x), a concat -> max pool -> quantized conv."""
    keep = Keep()
    net = create_network(create_builder())
    x = _input(net)
    a = _named(net.add_activation(x, trt.ActivationType.RELU), "a")
    b = _named(net.add_activation(x, trt.ActivationType.SIGMOID), "b")
    net.mark_output(_quantized_conv(net, keep, a, scale_a, "conv_a", qdq_name="a"))
    cat = _named(net.add_concatenation([a, b]), "cat")
    pool = net.add_pooling_nd(cat, trt.PoolingType.MAX, (2, 2))
    net.mark_output(_quantized_conv(net, keep, _named(pool, "pool"), scale_concat, "conv_c", qdq_name="pool"))
    return net, keep


def test_concat_and_max_pool_share_the_scale_of_their_inputs() -> None:
    """TensorRT moves the pool's quantize across max pool and concat onto `a` and `b`: `a`, quantized for its
    own conv too, then needs two scales. One scale for the group {a, b, cat, pool} removes that."""
    net, _ = _concat_net(0.05, 0.02)
    report = check_placement(net)
    [r] = report.requantized
    assert (r.tensor, r.kind) == ("a", "scales") and r.scales == [pytest.approx(0.02), pytest.approx(0.05)]
    groups = commuting_groups(net)
    assert groups.members("a") == ["a", "b", "cat", "pool"]
    net, _ = _concat_net(0.03, 0.03)
    report = check_placement(net)
    assert report.requantized == [] and report.same_scale("a", "pool") and report.shared == [["a", "pool"]]
    assert sorted(report.int8_layers()) == ["conv_a", "conv_c"]


def test_dequantized_value_quantized_again_with_another_scale_is_a_requantization() -> None:
    keep = Keep()
    net = create_network(create_builder())
    relu = _named(net.add_activation(_input(net), trt.ActivationType.RELU), "relu")
    _, dq = _qdq(net, keep, relu, 0.05, 0, "relu")
    pool = _named(net.add_pooling_nd(dq, trt.PoolingType.MAX, (2, 2)), "pool")
    net.mark_output(_quantized_conv(net, keep, pool, 0.02, "conv", qdq_name="pool"))
    report = check_placement(net)
    assert [(r.tensor, r.producer, r.scales) for r in report.requantized] == \
        [("relu", "relu/dq", [pytest.approx(0.05), pytest.approx(0.02)])]


def _amax_for(net, value=lambda i: 1.0 + 0.37 * i):
    """Distinct ranges for every tensor an FP32 Network's quantizer records (quantized or grouped)."""
    return {n: value(i) for i, n in enumerate(net.quant.calibration_names())}


def test_resnet_placement_quantizes_only_the_skip_of_each_residual_add() -> None:
    """Per block: the add reads one dequantized input, the identity (input 1); nothing is requantized; every conv
    and the fc run INT8; the only quantized conv outputs are projection shortcuts (the skip of their block); the
    global pool reads INT8, so no fused conv + add ends in float."""
    from networks.resnet import ResNet, random_bn_init, torch_resnet

    module = random_bn_init(torch_resnet("resnet18", num_classes=10, seed=0), seed=1)
    model = ResNet({k: v.numpy() for k, v in module.state_dict().items()})
    fp32 = model.define("fp32", input_size=(32, 32))
    int8 = model.define("int8", input_size=(32, 32), calibration=_amax_for(fp32))
    report = check_placement(int8)
    blocks = [f"layer{s}.{b}" for s in range(1, 5) for b in range(2)]
    assert {b: report.dequantized_inputs(f"{b}/add") for b in blocks} == {b: [1] for b in blocks}
    assert report.requantized == [] and report.float_residuals == []
    assert len(report.int8_layers()) == len(report.weighted) == 21  # 20 convs + fc
    assert report.quantized_weighted_outputs == [f"layer{s}.0.downsample.1" for s in (2, 3, 4)]
    assert report.site("layer4.1.relu#1").readers == ["avgpool:0"]  # the global pool reads INT8
    assert report.site("maxpool").readers == ["layer1.0.conv1:0", "layer1.0/add:1"]  # one Q/DQ per tensor
    assert fp32.quant.groups.groups() == [["avgpool", "flatten"], ["maxpool", "relu"]]  # declared by the modules
    assert int8.meta["int8"]["activations"] == len(report.activations) == 22


def _tiny(tmp_path, width_div=8):
    from networks.yolov4 import YOLOv4
    from weights_export.darknet_synth import write_synthetic_darknet, yolov4_tiny_cfg

    return YOLOv4.from_hdf5(write_synthetic_darknet(yolov4_tiny_cfg(width_div=width_div, classes=4), tmp_path, "t",
                                                    seed=3, gain=1.2))


def _check_darknet_placement(model, size, **options):
    """Each [shortcut] add reads both inputs through Q/DQ, the branch (the previous layer's activated output) in one
    scale with its `from` input, and is their only reader (R3b: the branch conv fuses its activation and writes
    INT8); route / max pool / upsample groups declared by the modules are the definition's commuting groups; every
    group shares one scale; 0 requantized tensors; the only quantized conv output is the stem's (preact_q="stem",
    read by its activation); the head's last convs and the decode carry no Q/DQ; every other conv runs INT8."""
    options = {"preact_q": "stem", **options}
    fp32 = model.define("fp32", input_size=size, nms="raw", **options)
    int8 = model.define("int8", input_size=size, nms="raw", calibration=_amax_for(fp32), **options)
    report = check_placement(int8)
    layers = model.cfg.layers
    shortcuts = [s.index for s in layers if s.type == "shortcut"]
    pairs = [sorted([f"layers.{i - 1}", f"layers.{i + s}"]) for i in shortcuts
             for s in [int(layers[i].str("from"))]]
    quantized = set(fp32.quant.sites)
    declared = [g for g in fp32.quant.groups.groups() if quantized & set(g)]
    commuting = [g for g in commuting_groups(fp32).groups() if quantized & set(g)]
    assert sorted(declared) == sorted(commuting + pairs) and declared
    for group in declared:
        assert report.same_scale(*[m for m in group if report.site(m)])
    assert report.requantized == [] and report.float_residuals == []
    assert report.quantized_weighted_outputs == ["layers.0.bn"]
    assert {i: report.dequantized_inputs(f"layers.{i}/add") for i in shortcuts} == {i: [0, 1] for i in shortcuts}
    assert all(report.site(f"layers.{i - 1}").readers == [f"layers.{i}/add:0"] for i in shortcuts)
    heads = {f"layers.{s.index - 1}.conv" for s in layers if s.type == "yolo"}
    convs = {w.layer: w.int8_input and w.int8_weights for w in report.weighted}
    assert {c for c, int8_conv in convs.items() if not int8_conv} == heads
    dequantized = {r.split(":")[0] for s in report.activations for r in s.readers}
    assert not any(r.startswith(("decode", "layers.")) and "/" in r and not r.endswith("/add")
                   and not r.startswith("layers.0/") for r in dequantized)
    return report, shortcuts, declared


def test_yolov4_tiny_placement_routes_share_one_scale_and_nothing_is_requantized(tmp_path) -> None:
    """YOLOv4-tiny: channel-group slices and concats into max pools form groups (section 3 of docs/int8.md). The
    default placement (preact_q="stem+leaky") quantizes every leaky conv at its raw output instead, each read by its
    activation alone, with the same groups, each in one scale, and nothing requantized."""
    model = _tiny(tmp_path)
    report, shortcuts, declared = _check_darknet_placement(model, 96)
    assert shortcuts == [] and ["layers.2", "layers.3", "layers.7", "layers.8", "layers.9"] in declared
    assert len(report.int8_layers()) == 19 and len(declared) == 6
    fp32 = model.define("fp32", input_size=96, nms="raw")
    default = check_placement(model.define("int8", input_size=96, nms="raw", calibration=_amax_for(fp32)))
    leaky = [f"layers.{i}.bn" for i in model.plan.convs_ending_in("leaky")]
    assert len(leaky) == 19 and sorted(default.quantized_weighted_outputs) == sorted(leaky)
    assert default.requantized == [] and len(default.int8_layers()) == 19
    assert all(default.site(name).readers == [f"{name[:-3]}/leaky:0"] for name in leaky)
    for group in declared:
        assert default.same_scale(*[m for m in group if default.site(m)])


def test_yolov4_placement_shortcuts_route_groups_and_float_head(tmp_path) -> None:
    """YOLOv4 (the real cfg, widths / 16, 64x64), shortcuts quantized after the activation (R3b): 23 shortcuts, the
    CSP / SPP / PAN route groups of docs/int8.md."""
    report, shortcuts, declared = _check_darknet_placement(_yolov4_h5(tmp_path), 64, shortcut_q="activation")
    assert len(shortcuts) == 23 and len(report.int8_layers()) == 107 and len(declared) == 10 + 23
    assert ["layers.4", "layers.6"] in declared and ["layers.17", "layers.19"] in declared  # branch + from
    assert len(report.activations) == 98 + 23 + 1  # + the stem's raw output
    assert ["layers.107", "layers.108", "layers.110", "layers.112", "layers.113"] in declared  # SPP
    assert ["layers.117", "layers.118.up", "layers.120", "layers.121"] in declared  # PAN, upsample included
    assert ["layers.116", "layers.152", "layers.153"] in declared


def _yolov4_h5(tmp_path):
    from networks.yolov4 import YOLOv4
    from weights_export.darknet_synth import write_synthetic_darknet, yolov4_cfg

    return YOLOv4.from_hdf5(write_synthetic_darknet(yolov4_cfg(width_div=16, classes=4), tmp_path, "y", seed=4,
                                                    gain=1.2))


def test_yolov4_shortcut_quantized_at_the_branch_conv_from_either_calibration(tmp_path) -> None:
    """R3c (shortcut_q="conv", the default) with preact_q="stem": each shortcut's branch conv and the stem
    write their raw output through Q/DQ (its only reader: the activation), the add reads one DQ, the skip's; no
    shortcut pairs a scale group; nothing requantized, no float residual. The ranges come from the R3b definition's
    calibration names (it observes every Mish conv's raw output, so one calibration serves every placement; the
    default's observes the activations R3b quantizes; both quantize the leaky convs' raw outputs). preact_q="none" leaves the
    stem's output to conv 1's input, "mish" quantizes every Mish conv's raw output, "stem+leaky" (the default) the
    stem's and every leaky conv's (each read by its activation alone)."""
    model = _yolov4_h5(tmp_path)
    fp32 = model.define("fp32", input_size=64, nms="raw", shortcut_q="activation")
    shortcuts = [s.index for s in model.cfg.layers if s.type == "shortcut"]
    branches = [f"layers.{i - 1}.bn" for i in shortcuts]
    mish = [f"layers.{i}.bn" for i in model.plan.convs_ending_in("mish")]
    leaky = [f"layers.{i}.bn" for i in model.plan.convs_ending_in("leaky")]
    assert len(mish) == 72 and branches[0] in mish and mish[0] == "layers.0.bn" and len(leaky) == 35
    head_inputs = [f"layers.{model.plan.layers[i].sources[0]}" for i in model.plan.head_convs]  # for head_q="int8"
    assert sorted(fp32.quant.observed) == sorted(mish[1:] + head_inputs)
    assert {"layers.0.bn", *leaky} <= set(fp32.quant.sites) and not set(branches) & set(fp32.quant.sites)
    assert set(branches) <= set(fp32.quant.calibration_names())
    default = model.define("fp32", input_size=64, nms="raw")
    assert sorted(default.quant.observed) == sorted([m for m in mish[1:] if m not in branches] + head_inputs
                                                    + [f"layers.{i - 1}" for i in shortcuts])  # + R3b's sites
    assert set(branches) <= set(default.quant.sites) and set(default.quant.calibration_names()) == set(
        fp32.quant.calibration_names())
    int8 = model.define("int8", input_size=64, nms="raw", calibration=_amax_for(fp32), preact_q="stem")
    report = check_placement(int8)
    assert report.requantized == [] and report.float_residuals == []
    assert report.quantized_weighted_outputs == ["layers.0.bn"] + branches
    assert {i: report.dequantized_inputs(f"layers.{i}/add") for i in shortcuts} == {i: [1] for i in shortcuts}
    assert all(report.site(b).readers == [f"{b[:-3]}/mish/softplus:0", f"{b[:-3]}/mish/mul:0"] for b in branches)
    quantized = set(int8.quant.sites)
    declared = [g for g in int8.quant.groups.groups() if quantized & set(g)]
    commuting = [g for g in commuting_groups(int8).groups() if quantized & set(g)]
    assert sorted(declared) == sorted(commuting) and len(declared) == 10
    assert len(report.int8_layers()) == 107 and int8.meta["define_options"]["preact_q"] == "stem"
    with pytest.raises(ValueError, match="shortcut_q='add'"):
        model.define("fp32", input_size=64, nms="raw", shortcut_q="add")
    assert report.site("layers.0.bn").readers == ["layers.0/mish/softplus:0", "layers.0/mish/mul:0"]
    assert report.site("layers.0").readers == ["layers.1.conv:0"]  # conv 1 reads the stem's activation as before
    none = check_placement(model.define("int8", input_size=64, nms="raw", calibration=_amax_for(fp32),
                                        preact_q="none"))
    assert none.quantized_weighted_outputs == branches and none.requantized == []
    every = check_placement(model.define("int8", input_size=64, nms="raw", calibration=_amax_for(fp32),
                                         preact_q="mish"))
    assert every.quantized_weighted_outputs == mish and every.requantized == [] and every.float_residuals == []
    assert every.site("layers.1").readers == ["layers.2.conv:0", "layers.4.conv:0"]  # CSP siblings share their input
    assert all(every.site(m).readers == [f"{m[:-3]}/mish/softplus:0", f"{m[:-3]}/mish/mul:0"] for m in mish)
    leaky_q = check_placement(model.define("int8", input_size=64, nms="raw", calibration=_amax_for(fp32)))
    assert sorted(leaky_q.quantized_weighted_outputs) == sorted(["layers.0.bn"] + branches + leaky)
    assert leaky_q.requantized == [] and leaky_q.float_residuals == [] and len(leaky_q.int8_layers()) == 107
    assert all(leaky_q.site(name).readers == [f"{name[:-3]}/leaky:0"] for name in leaky)  # the activation alone


def test_scale_groups_union_find_and_json() -> None:
    g = ScaleGroups([["a", "b"], ["c", "d"]])
    g.union("b", "d")
    g.add("e")
    assert g.same("a", "c") and not g.same("a", "e") and "e" in g
    assert g.groups() == [["a", "b", "c", "d"]] and g.groups(min_size=1)[-1] == ["e"]
    assert ScaleGroups(g.to_json()).groups() == g.groups()
    assert g.union() is None
    amax = g.amax({"a": 1.0, "c": 3.0, "e": 2.0, "x": 5.0})
    assert amax == {"a": 3.0, "b": 3.0, "c": 3.0, "d": 3.0, "e": 2.0, "x": 5.0}  # the largest member amax


def _stats(name: str, *arrays: np.ndarray) -> TensorStats:
    s = TensorStats(name)
    for a in arrays:
        s.update(torch.from_numpy(a))
    return s


def test_group_amax_is_the_calibration_of_the_merged_histogram() -> None:
    """A concat's values are its inputs' values: with equal ranges the merged histogram is the concat's, exactly;
    with different ranges the resampled one gives the concat's amax within a bin or two."""
    rng = np.random.default_rng()
    a = rng.standard_normal(40000).astype(np.float32)
    b = (rng.standard_normal(60000) * 3).astype(np.float32)
    a[0] = b[0] = max(np.abs(a).max(), np.abs(b).max())  # equal ranges: the same bins for a, b and the concat
    sa, sb, sc = _stats("a", a), _stats("b", b), _stats("cat", np.concatenate([a, b]))
    merged = merge_stats([sa, sb], "a+b")
    np.testing.assert_allclose(merged.counts, sc.counts)
    assert merged.amax("entropy") == sc.amax("entropy") and merged.num_values == 100000
    c = (rng.standard_normal(50000) * 0.5).astype(np.float32)  # a much narrower range
    cat = np.abs(np.concatenate([b, c]))
    sd, se = _stats("c", c), _stats("cat2", cat)
    merged = merge_stats([sb, sd], "b+c")  # c resampled onto b's 6x wider bins: off by at most a bin's count
    assert np.abs(np.cumsum(merged.counts) - np.cumsum(se.counts)).max() <= se.counts.max()
    for method in ("entropy", "percentile", "mse"):
        # In the sparse tail one value more or less moves an amax across many empty bins, so judge the
        # amax by what it clips: within 0.02% of the values (worst of 300 seeds: 12 of 110000, entropy).
        clipped = [int((cat > amax).sum()) for amax in (merged.amax(method), se.amax(method))]
        assert abs(clipped[0] - clipped[1]) <= 2e-4 * cat.size, (method, clipped)
    groups = ScaleGroups([["b", "c"]])
    amax = groups.amax({"b": 1.0, "c": 2.0}, stats={"b": sb, "c": sd}, method="percentile")
    assert amax["b"] == amax["c"] == merge_stats([sb, sd], "g").amax("percentile")


def test_rank_sites_orders_by_the_error_each_site_alone_causes() -> None:
    ref = np.random.default_rng(0).standard_normal((2, 50))
    noise = {"s1": 0.01, "s2": 0.2, "s3": 0.05}
    calls = []

    def run(quantized: frozenset) -> dict:
        calls.append(quantized)
        err = sum(noise[s] for s in quantized)
        return {"logits": ref * (1 + err)}

    result = rank_sites(run, ["s1", "s2", "s3"], progress=False)
    assert [e.site for e in result.ranking] == ["s2", "s3", "s1"]
    assert result.ranking[0].rel_err == pytest.approx(0.2) and result.all_quantized.rel_err == pytest.approx(0.26)
    assert calls[0] == frozenset() and len(calls) == 5 and result.samples == 2
    result.fp16 = result.worst(2)
    back = SensitivityResult.from_json(json.loads(json.dumps(result.to_json())))
    assert back.worst(2) == ["s2", "s3"] and back.fp16 == ["s2", "s3"] and "s2" in back.format()
    assert site_of("layer1.0.conv1", 2) == "layer1.0" and site_of("layers.5/mish/mul#1", 2) == "layers.5"
    assert site_of("fc/matmul", 2) == "fc"


def test_calibrate_cli_sensitivity_keeps_the_worst_sites_in_fp16(tmp_path, capsys) -> None:
    """Rank ResNet-18's stages (depth 1) on 2 samples, keep the worst 2 in FP16; the cache carries the ranking,
    a build skips those sites; a second call reuses the ranking (only K changes)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as test_int8_resnet: no OpenMP spin-waiting on shared cores
    try:
        _sensitivity_cli(tmp_path, capsys)
    finally:
        torch.set_num_threads(threads)


def _sensitivity_cli(tmp_path, capsys) -> None:
    from netdef.cli import main
    from netdef.executor import execute
    from networks.resnet import ResNet
    from tests.test_int8_resnet import _resnet_h5

    h5 = _resnet_h5("resnet18", tmp_path / "r18.h5", seed=4)
    np.save(tmp_path / "calib.npy", np.random.default_rng(1).standard_normal((8, 3, 32, 32)).astype(np.float32))
    calib = tmp_path / "calib.json"
    args = ["calibrate", "resnet18", "--weights", str(h5), "--data", str(tmp_path / "calib.npy"), "--out", str(calib),
            "--samples", "8", "--batch", "8", "--input-size", "32", "--no-progress", "--sensitivity", "2",
            "--sensitivity-samples", "2", "--sensitivity-depth", "1", "--sensitivity-report", str(tmp_path / "s.json")]
    assert main(args) == 0
    table = capsys.readouterr().out
    stored = json.loads(calib.read_text())["meta"]["sensitivity"]
    sites = [s for s, _, _ in stored["ranking"]]
    assert sorted(sites) == ["avgpool", "conv1", "fc", "layer1", "layer2", "layer3", "layer4"]
    assert stored["fp16"] == sites[:2] and stored["depth"] == 1 and stored["samples"] == 2
    assert json.loads((tmp_path / "s.json").read_text()) == stored and sites[0] in table
    errors = [r for _, r, _ in stored["ranking"]]
    assert errors == sorted(errors, reverse=True) and errors[0] > errors[-1] > 0
    model = ResNet.from_hdf5(h5)
    int8 = model.define("int8", input_size=(32, 32), calibration=str(calib))
    assert int8.meta["int8"]["sensitivity_fp16"] == sites[:2] and int8.meta["int8"]["fp16"] == sites[:2]
    report = check_placement(int8)
    weighted = {w.layer for w in report.weighted}
    kept = {w.layer for w in report.weighted if w.int8_weights}
    assert not any(site_of(layer, 1) in sites[:2] for layer in kept) and kept < weighted
    assert report.float_residuals == []  # FP16 sites read a fused INT8 block output through its Q/DQ
    x = np.random.default_rng(2).standard_normal((2, 3, 32, 32)).astype(np.float32)
    assert torch.isfinite(execute(int8.definition, {"input": x})["logits"]).all()
    assert main(args) == 0  # reused: the stored ranking, no recomputation
    assert "reused" in capsys.readouterr().out
    again = calibrate(model, tmp_path / "calib.npy", samples=8, input_size=(32, 32), out=calib, progress=False,
                      sensitivity=3, sensitivity_samples=2, sensitivity_depth=1)
    assert again.meta["sensitivity"]["fp16"] == sites[:3] == json.loads(calib.read_text())["meta"]["sensitivity"]["fp16"]
    assert again.meta["sensitivity"]["ranking"] == stored["ranking"]
    with pytest.raises(ValueError, match="K >= 0"):
        calibrate(model, tmp_path / "calib.npy", input_size=(32, 32), out=calib, progress=False, sensitivity=-1)


def test_a_temporary_network_stays_alive_while_it_is_read(tmp_path, monkeypatch) -> None:
    """check_placement and the executor take a netdef Network and hold it (the arrays its constants point into)
    while they read it: CPython frees an argument as soon as the callee rebinds its name, and scales then read back
    as whatever reused that memory (0, 1e-45 were seen). Checked where they read: the Network passed as a temporary
    is still alive, and the results equal those from a held Network."""
    import gc
    import weakref

    from netdef.executor import Executor, core
    from netdef.quantize import placement

    model = _yolov4_h5(tmp_path)
    amax = _amax_for(model.define("fp32", input_size=64, nms="raw"))
    held = model.define("int8", input_size=64, nms="raw", calibration=amax)
    scales = [a.scale for a in check_placement(held).activations]
    x = model.sample_input(1, 64, seed=int(np.random.default_rng().integers(1000)))
    expected = Executor(held)({"input": x})
    refs: list = []
    alive: list[bool] = []

    def temporary():
        net = model.define("int8", input_size=64, nms="raw", calibration=amax)
        refs.append(weakref.ref(net))
        return net

    def checked(read):  # the first read after the callee took the Network: collect, then is it alive?
        def wrapper(*args, **kwargs):
            if len(alive) < len(refs):
                gc.collect()
                alive.append(refs[-1]() is not None)
            return read(*args, **kwargs)
        return wrapper

    monkeypatch.setattr(placement.Graph, "scale", checked(placement.Graph.scale))
    monkeypatch.setattr(core, "_prepare", checked(core._prepare))
    assert [a.scale for a in check_placement(temporary()).activations] == scales
    got = Executor(temporary())({"input": x})
    assert all(torch.equal(got[k], expected[k]) for k in expected)
    assert alive == [True, True]
