"""HigherHRNet: official names, the whole network and its in-engine parsing against PyTorch in float64, engine
builds, INT8, checkpoint export, grouping into people on synthetic maps, and `netdef infer` on a pose engine."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

import networks
from netdef.engine import BuildSettings, save_engine
from netdef.executor import execute
from netdef.pose.grouping import GroupingSettings, group, match_by_tag, refine
from netdef.verify import compare, verify_network
from networks.higherhrnet import (PRESETS, HigherHRNet, HigherHRNetConfig, PoseHigherResolutionNet, _tile, infer_config,
                                  parse_network, torch_higherhrnet)
from networks.resnet import random_bn_init

torch.set_num_threads(2)
SMALL = HigherHRNetConfig(width=8, stem_channels=8, layer1_blocks=1, stage_modules=(1, 2, 1), stage_blocks=1,
                          deconv_blocks=1)
SIZE = (64, 96)  # non-square, multiples of 32
LAYER_SIZE = (32, 64)  # the smallest non-square size (float64 convolutions on the CPU are slow)
TOLERANCE = {"fp32": 1e-5, "fp16": 5e-3}


def numpy_state(model: torch.nn.Module) -> dict[str, np.ndarray]:
    return {k: v.numpy() for k, v in model.state_dict().items()}


@pytest.fixture(scope="module")
def small() -> HigherHRNet:
    """A small-width HigherHRNet with realistic BatchNorm statistics (all four stages, every fuse kind)."""
    return HigherHRNet(numpy_state(random_bn_init(torch_higherhrnet(SMALL, seed=0), seed=1)))


# --- names --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("arch", list(PRESETS))
def test_parameter_names_are_the_official_ones(arch: str) -> None:
    state = torch_higherhrnet(arch).state_dict()
    assert len(state) == 1810  # PoseHigherResolutionNet's count for both experiment configs, num_batches_tracked incl.
    width = PRESETS[arch].width
    for key, shape in (("transition1.0.0.weight", (width, 256, 3, 3)),
                       ("transition3.3.0.0.weight", (8 * width, 4 * width, 3, 3)),
                       ("stage4.0.fuse_layers.3.0.2.1.running_var", (8 * width,)),
                       ("stage4.2.fuse_layers.0.3.0.weight", (width, 8 * width, 1, 1)),
                       ("deconv_layers.0.0.0.weight", (width + 34, width, 4, 4)),
                       ("deconv_layers.0.4.0.conv2.weight", (width, width, 3, 3)), ("final_layers.1.bias", (17,))):
        assert tuple(state[key].shape) == shape, key
    assert "stage4.2.fuse_layers.1.0.0.0.weight" not in state  # the last module fuses into the first branch only
    netdef_names = {k: p.shape for k, p in PoseHigherResolutionNet(PRESETS[arch]).named_parameters()}
    assert netdef_names == {k: tuple(v.shape) for k, v in state.items() if not k.endswith("num_batches_tracked")}
    assert infer_config(state) == PRESETS[arch] and HigherHRNet(state).arch == arch
    assert networks.get(arch) is HigherHRNet


# --- the network against PyTorch -------------------------------------------------------------------------------
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_raw_outputs_match_pytorch_layer_by_layer(small: HigherHRNet, precision: str) -> None:
    assert small.config == SMALL and small.arch == "higherhrnet"
    net = small.define(precision, LAYER_SIZE, outputs="raw")
    reference = small.reference()
    for batch, seed in ((1, 11), (3, 12)) if precision == "fp32" else ((2, 13),):
        report = verify_network(net, reference, small.sample_input(batch, LAYER_SIZE, seed=seed))
        where = f"{precision} batch {batch}"
        assert [c.name for c in report.outputs] == ["output0", "output1"], where
        assert report.ok, f"{where}: {report.first_failure}"
        assert [c.shape for c in report.outputs] == [(batch, 34, 8, 16), (batch, 17, 16, 32)]
        assert len(report.layers) > 100 and not report.unmatched, f"{where}: unmatched {report.unmatched}"
        assert 0 < report.worst.rel <= TOLERANCE[precision], f"{where}: worst layer {report.worst}"


@pytest.mark.parametrize("topk,nms_kernel", [(30, 5), (7, 3)])
def test_parsed_outputs_are_the_reference_steps(small: HigherHRNet, topk: int, nms_kernel: int) -> None:
    net = small.define("fp32", LAYER_SIZE, topk=topk, nms_kernel=nms_kernel)
    assert net.output_names == ["scores", "keypoints", "tags"] and net.meta["outputs_kind"] == "parsed"
    assert net.meta["define_options"] == {"outputs": "parsed", "topk": topk, "nms_kernel": nms_kernel}
    small.define("fp32", LAYER_SIZE, outputs="raw")  # the reference depends on its arguments only
    reference = small.reference("parsed", topk=topk, nms_kernel=nms_kernel)
    x = small.sample_input(2, LAYER_SIZE, seed=5)
    report = verify_network(net, reference, x)
    scores, keypoints, tags = report.outputs
    assert scores.shape == tags.shape == (2, 17, topk) and keypoints.shape == (2, 17, topk, 2)
    assert scores.rel <= 1e-5  # the same k largest values, sorted
    # Positions and tags: where a score is not tied in its map (a map with fewer than k peaks fills with zeros, in
    # an order neither torch.topk nor TensorRT defines), the same peaks, quarter-pixel steps and tags.
    got = execute(net.definition, {"input": x})
    with torch.no_grad():
        ref = [t.numpy() for t in reference.double()(torch.from_numpy(x).double())]
    untied = (ref[0][..., :, None] == ref[0][..., None, :]).sum(-1) == 1  # (B, J, k): its score is unique in its map
    assert 0.5 < untied.mean() < 1.0  # both kinds occur (some maps of this small model have few peaks)
    assert np.array_equal(got["keypoints"].numpy()[untied], ref[1][untied])
    assert np.abs(got["tags"].double().numpy()[untied] - ref[2][untied]).max() <= 1e-5 * np.abs(ref[2]).max()


@pytest.mark.parametrize("tile", [8, 4, 2])
def test_top_k_by_tiles_is_the_top_k_of_the_whole_map(tile: int) -> None:
    """The tiled top k (k tiles by their maximum, then the k best of their values) returns what one TopK over
    each whole NMS map returns: the same sorted scores, and the same positions and tags wherever a score is unique
    in its map; on fresh random maps with many peaks (rough maps: peaks in every tile)."""
    height, width, joints = 128, 96, 5
    rng = np.random.default_rng()
    output0 = rng.standard_normal((2, 2 * joints, height // 4, width // 4)).astype(np.float32)
    output1 = rng.standard_normal((2, joints, height // 2, width // 2)).astype(np.float32)
    whole = execute(parse_network(joints, (height, width), tile=1).definition, {"output0": output0, "output1": output1})
    tiled = parse_network(joints, (height, width), tile=tile)
    assert any(tiled.definition.get_layer(i).name == "parse/tile_topk" for i in range(tiled.definition.num_layers))
    got = execute(tiled.definition, {"output0": output0, "output1": output1})
    scores = whole["scores"].numpy()
    assert (scores > 0).all() and np.array_equal(got["scores"].numpy(), scores)
    untied = (scores[..., :, None] == scores[..., None, :]).sum(-1) == 1
    assert untied.mean() > 0.99
    for name in ("keypoints", "tags"):
        assert np.array_equal(got[name].numpy()[untied], whole[name].numpy()[untied])
    with pytest.raises(ValueError, match="tile=3"):
        parse_network(joints, (height, width), tile=3)
    # by default the largest of 8, 4, 2 leaving k tiles: 8 at the seed's 512 x 512 (4096 tiles, not 262144 values)
    assert [_tile(None, h, w, 30) for h, w in ((512, 512), (32, 32), (16, 16), (10, 10))] == [8, 4, 2, 1]


def synthetic_people(height: int, width: int, people: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Raw outputs with one Gaussian per person and joint (off the pixel grid) and one tag value per person.

    Returns output0, output1 and the true positions (people, 17, 2) in input pixels (continuous coordinates).
    """
    rng = np.random.default_rng(seed)
    hh, hw = height // 2, width // 2
    truth = np.zeros((people, 17, 2))
    output0 = np.zeros((1, 34, height // 4, width // 4), np.float32)
    output1 = np.zeros((1, 17, hh, hw), np.float32)
    yy, xx = np.mgrid[0:hh, 0:hw]
    qy, qx = np.mgrid[0:height // 4, 0:width // 4]
    for j in range(17):
        placed: list[np.ndarray] = []
        while len(placed) < people:  # joints of one kind at least 9 half-res pixels apart
            c = rng.uniform(4, [hw - 5, hh - 5])
            if all(np.hypot(*(c - p)) >= 9 for p in placed):
                placed.append(c)
        nearest = np.argmin([np.hypot(qx + 0.5 - (c[0] + 0.5) / 2, qy + 0.5 - (c[1] + 0.5) / 2) for c in placed], 0)
        output0[0, 17 + j] = 3.0 * nearest  # tags: person p's Voronoi cell around its joint reads 3p
        for p, (cx, cy) in enumerate(placed):
            output1[0, j] += rng.uniform(0.6, 1.0) * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * 1.5 ** 2))
            truth[p, j] = 2 * (np.array([cx, cy]) + 0.5)  # a half-res index -> continuous input pixels
    return output0, output1, truth


def test_parse_and_grouping_find_planted_people() -> None:
    height, width, people = 128, 160, 3
    output0, output1, truth = synthetic_people(height, width, people, seed=3)
    net = parse_network(17, (height, width))
    found = execute(net.definition, {"output0": output0, "output1": output1})
    scores, keypoints, tags = (found[n].numpy()[0] for n in ("scores", "keypoints", "tags"))
    assert (scores[:, :people] > 0.25).all() and (scores[:, people:] < 0.1).all()  # one peak per blob
    result = group(scores, keypoints, tags)
    assert len(result) == people
    for joints, score in result:
        p = int(np.argmin(np.abs(truth[:, 0] - joints[0, :2]).sum(1)))  # which planted person this is
        assert (joints[:, 2] > 0.25).all() and score == pytest.approx(joints[:, 2].mean())
        assert np.abs(joints[:, :2] - truth[p]).max() <= 0.5  # the quarter-pixel step lands within half a pixel


def test_grouping_by_tags_refinement_and_strays() -> None:
    rng = np.random.default_rng(0)
    k, people = 10, 3
    scores = rng.uniform(0.0, 0.05, (17, k))  # weak candidates everywhere
    keypoints = rng.uniform(0, 200, (17, k, 2))
    tags = rng.uniform(20, 30, (17, k))
    truth = rng.uniform(0, 200, (people, 17, 2))
    for p in range(people):  # person p: candidate slot p of every joint, tags near 3p
        scores[:, p], keypoints[:, p] = rng.uniform(0.5, 1, 17), truth[p]
        tags[:, p] = 3.0 * p + rng.uniform(-0.3, 0.3, 17)
    scores[8, 1] = 0.08  # below the detection threshold: matching skips it, refinement finds it
    scores[4, people], tags[4, people] = 0.9, -40.0  # a strong candidate whose tag matches nobody
    matched = match_by_tag(scores, keypoints, tags)
    assert matched.shape == (people + 1, 17, 4)
    by_tag = {round(float(np.median(m[m[:, 2] > 0, 3]))): m for m in matched}
    assert sorted(by_tag) == [-40, 0, 3, 6]
    assert (by_tag[-40][:, 2] > 0).sum() == 1 and by_tag[-40][4, 2] == pytest.approx(0.9)
    for p in range(people):
        found = by_tag[3 * p][:, 2] > 0
        np.testing.assert_allclose(by_tag[3 * p][found, :2], truth[p, found])
        assert found.sum() == (16 if p == 1 else 17)
    refined = refine(by_tag[3], scores, keypoints, tags)
    assert refined[8, 2] == pytest.approx(0.08) and np.allclose(refined[8, :2], truth[1, 8])
    people_found = group(scores, keypoints, tags)  # refinement also fills the stray's joints, as the reference's does
    assert sorted(int((j[:, 2] > 0).sum()) for j, _ in people_found) == [17, 17, 17, 17]
    unrefined = group(scores, keypoints, tags, GroupingSettings(refine=False))
    assert sorted(int((j[:, 2] > 0).sum()) for j, _ in unrefined) == [1, 16, 17, 17]


def tie_heavy_costs(rng: np.random.Generator) -> np.ndarray:
    """Costs like the grouping's: whole hundreds per rounded tag distance minus one score per row (ties
    everywhere), some with fewer rows than columns."""
    rows = int(rng.integers(1, 12))
    return np.round(rng.uniform(0, 6, (rows, rows + int(rng.integers(0, 4))))) * 100 - rng.uniform(0, 1, (rows, 1))


def test_assignment_is_optimal_and_breaks_ties_as_munkres() -> None:
    from scipy.optimize import linear_sum_assignment

    from netdef.pose.grouping import min_cost_assignment

    rng = np.random.default_rng()
    for _ in range(200):
        cost = tie_heavy_costs(rng)
        pairs = min_cost_assignment(cost)
        r, c = linear_sum_assignment(cost)
        assert [p[0] for p in pairs] == list(range(len(cost))) and len({p[1] for p in pairs}) == len(cost)
        assert sum(cost[i, j] for i, j in pairs) == pytest.approx(cost[r, c].sum(), abs=1e-9)
    munkres = pytest.importorskip("munkres", reason="the reference's solver (pip install 'munkres<2')")
    for _ in range(200):  # which optimum: the reference's
        cost = tie_heavy_costs(rng)
        assert min_cost_assignment(cost) == [tuple(p) for p in munkres.Munkres().compute(cost.tolist())]


def test_grouping_equals_the_reference_on_random_scenes() -> None:
    """group() against the reference's match_by_tag + refine as written (bench/higherhrnet_reference.py: people in
    a dict keyed by tag, np.mean of tag lists, joint by joint loops) with the same assignment solver, on fresh
    scenes with missing, faint and stray joints."""
    from tests.bench_scripts import load_bench

    from netdef.pose.grouping import min_cost_assignment
    from netdef.pose.synthetic import tag_candidates

    ref = load_bench("higherhrnet_reference")
    seed = int(np.random.SeedSequence().entropy % 2**32)
    rng = np.random.default_rng(seed)
    solve = lambda cost: np.array(min_cost_assignment(cost))  # noqa: E731
    for _ in range(6):
        people = int(rng.integers(1, 16))
        scores, keypoints, tags, truth = tag_candidates(people, 30, 512, seed=int(rng.integers(2**32)),
                                                        strays=int(rng.integers(0, 3)))
        ours = group(scores, keypoints, tags)
        theirs = ref.group(scores, keypoints, tags, solve=solve)
        assert len(ours) == len(theirs) >= people, f"seed {seed}"
        for (a, score_a), (b, score_b) in zip(ours, theirs):
            np.testing.assert_allclose(a, b, atol=1e-4, err_msg=f"seed {seed}")  # the reference's float32 people
            assert score_a == pytest.approx(score_b, abs=1e-6), f"seed {seed}"


# --- engines, INT8, export ----------------------------------------------------------------------------------
def test_engines_build_raw_and_parsed(small: HigherHRNet) -> None:
    for outputs, shapes in (("raw", [[4, 34, 16, 24], [4, 17, 32, 48]]), ("parsed", [[4, 17, 30], [4, 17, 30, 2],
                                                                                      [4, 17, 30]])):
        for precision in ("fp32", "fp16"):
            plan = small.build(precision, batch=(1, 2, 4), input_size=SIZE, outputs=outputs,
                               settings=BuildSettings(precision=precision, batch=(1, 2, 4), progress=False))
            assert [o["max"] for o in plan.meta["outputs"]] == shapes, (outputs, precision)
            assert plan.meta["arch"] == "higherhrnet" and plan.meta["outputs_kind"] == outputs


def test_parse_runs_in_fp32_in_an_fp16_definition(small: HigherHRNet) -> None:
    """In FP16 the resized heatmaps round a peak's neighbours to its value: NMS keeps them all and the top k fills
    with duplicates (torch shows it below; the H200 FP16 engine's scores were 15% off). So the parse is FP32: every
    floating layer after the casts of the two maps writes FP32, and the definition says so to the builder."""
    from networks.higherhrnet_torch import torch_parse

    rng = np.random.default_rng()
    coarse = torch.from_numpy(rng.standard_normal((1, 51, 16, 16)))
    maps = torch.nn.functional.interpolate(coarse, size=(128, 128), mode="bicubic", align_corners=False) * 0.1
    output0, output1 = maps[:, :34, ::2, ::2].contiguous(), maps[:, 34:]
    exact, half = torch_parse(output0, output1)[0], torch_parse(output0.half(), output1.half())[0].double()
    assert float((half - exact).norm() / exact.norm()) > 0.01  # not FP16's 1e-3: different candidates
    d = small.define("fp16", SIZE).definition
    parse_layers = [d.get_layer(i) for i in range(d.num_layers) if d.get_layer(i).name.startswith("parse/")]
    floating = [layer for layer in parse_layers if layer.get_output(0).dtype.name in ("FLOAT", "HALF")]
    assert len(floating) > 20 and [l.name for l in floating if l.get_output(0).dtype.name != "FLOAT"] == []
    assert parse_layers[0].name == "parse/output0/float" and parse_layers[0].type.name == "CAST"


def test_int8_quantizes_convolutions_and_builds(small: HigherHRNet, tmp_path) -> None:
    from netdef.quantize import calibrate, load_data, preprocessing_for
    from netdef.quantize.placement import check_placement

    for i in range(3):  # calibration on an image folder goes through the network's own preprocessing
        pixels = np.random.default_rng(i).integers(0, 256, (50, 70, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(tmp_path / f"{i}.png")
    images = load_data(tmp_path, (3, *SIZE), preprocessing_for(small))
    np.testing.assert_allclose(next(images.batches(3))[1], small.preprocess(str(tmp_path / "1.png"), SIZE))
    cache = calibrate(small, tmp_path, input_size=SIZE, progress=False)
    # the parsed definition's ranges serve raw (group amax included)
    net = small.define("int8", SIZE, outputs="raw", calibration=cache.resolved_amax())
    report = check_placement(net)  # docs/int8.md: nothing requantized, no fused INT8 conv + add ending in float
    assert report.requantized == [] and report.float_residuals == [] and len(report.activations) > 40
    float_convs = {w.layer: w.int8_input for w in report.weighted if not w.int8_weights}
    assert float_convs == {"final_layers.0": False, "deconv_layers.0.0.0": False,  # the maps and the deconv: FP16
                           "final_layers.1": True}  # reads a fused INT8 conv + add's output: through its Q/DQ
    blocks = {r.split(":")[0] for s in report.activations for r in s.readers if ".branches." in r and "/add" in r}
    assert blocks and all(report.dequantized_inputs(b) == [1] for b in blocks)  # each block add: its identity
    assert report.quantized_weighted_outputs[0] == "layer1.0.downsample.1"
    assert net.meta["int8"]["guarded"] == ["deconv_layers.0.1.0.relu#1"]  # read by final_layers.1 through Q/DQ
    x = small.sample_input(2, SIZE, seed=22)
    produced = execute(net.definition, {"input": x}, dtype=torch.float64)
    with torch.no_grad():
        expected = small.reference().double()(torch.from_numpy(x).double())
    for name, ref in zip(("output0", "output1"), expected):
        assert 0.95 <= compare(produced[name], ref)[2] < 0.9999  # cosine: quantized, and still the same maps
    plan = net.build(BuildSettings(precision="int8", batch=(1, 2, 2), progress=False))
    assert plan.meta["precision"] == "int8"
    parsed = small.define("int8", SIZE, calibration=cache)
    d = parsed.definition
    quantized = [d.get_layer(i).name for i in range(d.num_layers) if d.get_layer(i).type.name == "QUANTIZE"]
    assert len(quantized) > 50 and not [n for n in quantized if n.startswith("parse")]  # the parse stays float
    assert check_placement(parsed).requantized == []


def test_int8_upsampled_fuse_branches_quantized_at_the_conv(small: HigherHRNet) -> None:
    """upsample_q="conv": every fuse-layer add of an upsampled branch reads it through a DQ (its 1x1 conv's output,
    quantized across the nearest upsample, in one scale group with it) instead of as a float resize; the default
    reads it as float; one calibration (the default definition's) serves both; nothing requantized; the outputs
    stay as close to float64 as the default's; the engine builds."""
    from netdef.quantize import calibrate
    from netdef.quantize.placement import check_placement

    data = np.concatenate([small.sample_input(1, SIZE, seed=s) for s in range(4)])
    cache = calibrate(small, data, batch=4, input_size=SIZE, progress=False).resolved_amax()  # parsed's, for raw
    x = small.sample_input(2, SIZE, seed=int(np.random.default_rng().integers(1000)))
    with torch.no_grad():
        expected = small.reference().double()(torch.from_numpy(x).double())
    readers = {}
    cosine = {}
    for option in ("float", "conv"):
        net = small.define("int8", SIZE, outputs="raw", calibration=cache, upsample_q=option)
        report = check_placement(net)
        assert report.requantized == [] and report.float_residuals == []
        d = net.definition
        producer = {d.get_layer(i).get_output(0).name: d.get_layer(i).type.name for i in range(d.num_layers)}
        adds = [d.get_layer(i) for i in range(d.num_layers) if d.get_layer(i).name.startswith("stage")
                and ".branches." not in d.get_layer(i).name and d.get_layer(i).type.name == "ELEMENTWISE"]
        readers[option] = sorted({producer.get(a.get_input(k).name) for a in adds for k in range(2)})
        produced = execute(net.definition, {"input": x}, dtype=torch.float64)
        cosine[option] = min(compare(produced[n], ref)[2] for n, ref in zip(("output0", "output1"), expected))
    print(f"\nHigherHRNet INT8 outputs cosine vs float64: {cosine}, fuse add inputs: {readers}")
    assert "RESIZE" in readers["float"] and "RESIZE" not in readers["conv"]
    assert cosine["conv"] >= 0.95 and cosine["conv"] >= cosine["float"] - 0.015
    assert small.define("int8", SIZE, outputs="raw", calibration=cache, upsample_q="conv").meta[
        "define_options"]["upsample_q"] == "conv"
    with pytest.raises(ValueError, match="upsample_q='add'"):
        small.define("fp32", SIZE, upsample_q="add")


@pytest.mark.slow
def test_official_checkpoint_exports_and_builds(tmp_path) -> None:
    from netdef.cli import main

    reference = random_bn_init(torch_higherhrnet("higherhrnet-w32", seed=2), seed=3)
    torch.save(reference.state_dict(), tmp_path / "pose_higher_hrnet_w32_512.pth")
    out = tmp_path / "w32.h5"
    assert main(["export", "--arch", "higherhrnet-w32", "--checkpoint", str(tmp_path / "pose_higher_hrnet_w32_512.pth"),
                 "--out", str(out), "--no-progress"]) == 0
    model = HigherHRNet.from_hdf5(out)
    assert model.arch == "higherhrnet-w32" and model.config == PRESETS["higherhrnet-w32"]
    x = model.sample_input(1, (64, 64), seed=4)
    net = model.define("fp32", (64, 64), outputs="raw")  # the Network keeps the weight arrays alive
    produced = execute(net, {"input": x})
    with torch.no_grad():
        expected = reference(torch.from_numpy(x))
    for name, ref in zip(("output0", "output1"), expected):
        assert compare(produced[name], ref)[1] <= 1e-5
    plan = model.build("fp16", input_size=(64, 64), settings=BuildSettings(precision="fp16", progress=False))
    assert plan.meta["arch"] == "higherhrnet-w32" and len(plan.data) > 50e6 / 2


def test_bad_sizes_options_and_weights_are_refused(small: HigherHRNet) -> None:
    with pytest.raises(ValueError, match="multiples of 32"):
        small.define("fp32", (100, 96))
    with pytest.raises(ValueError, match="outputs='boxes'"):
        small.define("fp32", SIZE, outputs="boxes")
    with pytest.raises(ValueError, match="odd size"):
        small.define("fp32", SIZE, nms_kernel=4)
    with pytest.raises(ValueError, match="not look like a HigherHRNet .no final_layers.1.weight"):
        HigherHRNet({k: v for k, v in small.weights.items() if not k.startswith("final_layers.1")})
    with pytest.raises(ValueError, match="outputs='boxes'"):
        small.reference("boxes")
    lacking = HigherHRNet({k: v for k, v in small.weights.items() if k != "stage4.0.branches.1.0.bn2.running_var"})
    with pytest.raises(ValueError, match="reference needs 1 tensor.*: stage4.0.branches.1.0.bn2.running_var$"):
        lacking.reference()


# --- netdef infer on a pose engine --------------------------------------------------------------------------
def test_infer_prints_and_draws_people(tmp_path, small: HigherHRNet, capsys) -> None:
    from netdef.cli import main
    from netdef.pose.higherhrnet import estimate, preprocess
    from netdef.runtime.session import InferenceSession
    from weights_export.hdf5 import write_weights

    h5 = tmp_path / "small.h5"
    write_weights(h5, small.weights, root_attrs={"arch": "higherhrnet"})
    engine = save_engine(HigherHRNet.from_hdf5(h5).build(input_size=(96, 128), settings=BuildSettings(progress=False)),
                         tmp_path / "pose.engine")
    image, drawn, report = tmp_path / "people.png", tmp_path / "drawn.png", tmp_path / "people.json"
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (60, 90, 3), dtype=np.uint8)).save(image)
    assert main(["infer", str(engine), "--executor", "netdef", "--weights", str(h5), "--image", str(image),
                 "--save", str(drawn), "--json", str(report)]) == 0
    found = json.loads(report.read_text())["results"][0]["people"]
    assert f"{len(found)} people" in capsys.readouterr().out and found
    net = HigherHRNet.from_hdf5(h5).define("fp32", (96, 128))
    with InferenceSession.from_definition(net) as session:
        expected = estimate(session, [str(image)])[0]
    assert [p.as_dict() for p in expected] == found
    info = preprocess(str(image), (96, 128))[1]
    low = np.array([-info.pad_x, -info.pad_y]) / info.scale  # the input's corners in image pixels
    high = (np.array([128, 96]) - [info.pad_x, info.pad_y]) / info.scale
    for person in expected:  # keypoints mapped from input pixels back to the 90x60 image's
        xy = person.keypoints[person.found(), :2]
        assert (xy >= low).all() and (xy <= high).all() and (xy[:, 0] > 1).any() and (xy[:, 0] < 89).any()
    assert (np.asarray(Image.open(drawn).convert("RGB")) != np.asarray(Image.open(image).convert("RGB"))).any()
