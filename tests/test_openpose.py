"""OpenPose body: Hzzone's names, the network against PyTorch in float64, the in-engine parsing against torch,
engine builds with TensorRT-RTX, export of the reference's checkpoints."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import networks
from netdef.engine import BuildSettings
from netdef.executor import Executor
from netdef.pose.paf import NO_LIMB, PafSettings, canonical, gaussian_kernel, image_people
from netdef.verify import relative_error, verify_network
from networks.openpose import BodyConfig, BodyPoseModule, OpenPose, parse_network, torch_body_pose
from networks.openpose_torch import torch_parse
from netdef.pose.synthetic import people_maps

torch.set_num_threads(2)
SMALL = BodyConfig(stages=3, width_div=8)


def small_model(seed: int = 0) -> tuple[OpenPose, torch.nn.Module]:
    """A reduced model with trained-looking weights: He-scaled kernels and non-zero biases."""
    ref = torch_body_pose(SMALL, seed=seed)
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for m in ref.modules():
            if isinstance(m, torch.nn.Conv2d):
                fan_in = m.weight[0].numel()
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen) * (2.0 / fan_in) ** 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.1)
    return OpenPose({k: v.numpy() for k, v in ref.state_dict().items()}), ref


@pytest.fixture(scope="module")
def full_reference() -> torch.nn.Module:
    return torch_body_pose(seed=0)


# --- names and architecture ----------------------------------------------------------------------------------

def test_names_and_shapes_are_hzzones(full_reference: torch.nn.Module) -> None:
    state = full_reference.state_dict()
    assert len(state) == 184 and sum(v.numel() for v in state.values()) == 52_311_446
    for key, shape in (("model0.conv1_1.weight", (64, 3, 3, 3)), ("model0.conv4_4_CPM.weight", (128, 256, 3, 3)),
                       ("model1_1.conv5_5_CPM_L1.weight", (38, 512, 1, 1)),
                       ("model1_2.conv5_5_CPM_L2.weight", (19, 512, 1, 1)),
                       ("model2_1.Mconv1_stage2_L1.weight", (128, 185, 7, 7)),
                       ("model6_2.Mconv7_stage6_L2.weight", (19, 128, 1, 1))):
        assert tuple(state[key].shape) == shape
    netdef_names = {k: p.shape for k, p in BodyPoseModule().named_parameters()}
    assert netdef_names == {k: tuple(v.shape) for k, v in state.items()}
    assert networks.get("openpose-body") is OpenPose


def test_relus_follow_cmu(full_reference: torch.nn.Module) -> None:
    """Every conv has a ReLU but each branch's last; the front ends in one (conv4_4_CPM)."""
    children = {name for name, _ in full_reference.named_modules()}
    assert "model0.relu_conv4_4_CPM" in children and "model1_1.relu_conv5_4_CPM_L1" in children
    for stage in range(2, 7):
        for branch in (1, 2):
            assert f"model{stage}_{branch}.relu_Mconv6_stage{stage}_L{branch}" in children
            assert f"model{stage}_{branch}.relu_Mconv7_stage{stage}_L{branch}" not in children
    assert "model1_2.relu_conv5_5_CPM_L2" not in children


def test_cmu18_limbs_are_the_references_tables() -> None:
    """netdef's 0-based limbs equal the reference's 1-based tables (restated in bench/openpose_reference.py)."""
    import importlib.util
    from pathlib import Path

    from netdef.pose.skeleton import CMU18, CMU18_PAF_LIMBS

    spec = importlib.util.spec_from_file_location("openpose_reference",
                                                  Path(__file__).parents[1] / "bench" / "openpose_reference.py")
    ref = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ref)
    assert CMU18_PAF_LIMBS == tuple((a - 1, b - 1, cx - 19, cy - 19)
                                    for (a, b), (cx, cy) in zip(ref.LIMB_JOINTS, ref.LIMB_PAF))
    assert CMU18.limbs == tuple((a, b) for a, b, _, _ in CMU18_PAF_LIMBS[:17])
    assert sorted(c for limb in CMU18_PAF_LIMBS for c in limb[2:]) == list(range(38))


def test_config_is_read_from_the_weights() -> None:
    model, _ = small_model()
    assert model.config == SMALL
    with pytest.raises(ValueError, match="not an OpenPose body model"):
        OpenPose({"conv.weight": np.zeros((1, 1, 1, 1), np.float32)})


# --- the network against PyTorch -----------------------------------------------------------------------------

def test_raw_network_matches_pytorch_layer_by_layer() -> None:
    model, ref = small_model()
    net = model.define(input_size=(32, 48), outputs="raw")
    assert net.output_names == ["paf", "heatmap"]
    x = model.sample_input(2, (32, 48), seed=3)
    report = verify_network(net, ref, x, tolerance=1e-10)
    assert report.ok, report.layers[:3]
    assert len(report.layers) > 40 and not report.unmatched  # every conv, relu, pool and both outputs
    produced = {c.name: c for c in report.layers}
    assert produced["paf"].shape == (2, 38, 4, 6) and produced["heatmap"].shape == (2, 19, 4, 6)


def test_parsed_network_verifies_against_pytorch() -> None:
    """The whole parsed network against the torch reference ending in torch_parse (float64, batch 2)."""
    _, ref = small_model(seed=3)
    with torch.no_grad():
        ref.model3_2[-1].weight.mul_(20)  # heatmaps that reach the peak threshold
    model = OpenPose({k: v.numpy() for k, v in ref.state_dict().items()})
    net = model.define(input_size=(48, 64), max_peaks=8)
    x = model.sample_input(2, (48, 64), seed=1)
    assert net.meta["define_options"] == {"outputs": "parsed", "max_peaks": 8}
    model.define(input_size=(48, 64), outputs="raw")  # the reference depends on its arguments only
    report = verify_network(net, model.reference("parsed", max_peaks=8), x)
    assert report.ok and [c.name for c in report.outputs] == ["peaks", "peak_counts", "limb_scores"]
    counts = Executor(net)({"input": x})["peak_counts"]
    assert counts.sum() > 10 and (counts > 8).any()  # peaks found, and some parts with more than K


def test_raw_network_fp16() -> None:
    model, ref = small_model(seed=4)
    x = model.sample_input(1, (32, 32), seed=5)
    out = Executor(model.define(precision="fp16", input_size=(32, 32), outputs="raw"))({"input": x})
    with torch.no_grad():
        paf, heat = ref(torch.from_numpy(x))
    assert relative_error(out["paf"], paf) < 5e-3 and relative_error(out["heatmap"], heat) < 5e-3


def test_input_size_must_be_a_multiple_of_8() -> None:
    model, _ = small_model()
    with pytest.raises(ValueError, match="multiples of 8"):
        model.define(input_size=(30, 48), outputs="raw")
    with pytest.raises(ValueError, match="outputs="):
        model.define(input_size=(32, 48), outputs="maps")


# --- the parsing: engine layers against torch_parse --------------------------------------------------------------

def assert_same_parse(actual: dict, expected: tuple, tol: float) -> None:
    expected = [t.numpy() for t in expected]
    np.testing.assert_array_equal(actual["peak_counts"], expected[1])
    for b in range(len(expected[0])):
        parts, scores = canonical(actual["peaks"][b], actual["peak_counts"][b], actual["limb_scores"][b])
        parts_ref, scores_ref = canonical(expected[0][b], expected[1][b], expected[2][b])
        for p, p_ref in zip(parts, parts_ref):
            np.testing.assert_array_equal(p[:, :2], p_ref[:, :2])
            np.testing.assert_allclose(p[:, 2], p_ref[:, 2], rtol=tol, atol=tol)
        for s, s_ref in zip(scores, scores_ref):
            np.testing.assert_array_equal(s == NO_LIMB, s_ref == NO_LIMB)
            np.testing.assert_allclose(s, s_ref, rtol=tol, atol=tol)


def random_maps(size: tuple[int, int], batch: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Smooth random maps with a few peaks per part and PAF values around +-1."""
    rng = np.random.default_rng(seed)
    h, w = size
    low = rng.standard_normal((batch, 57, h // 2 + 1, w // 2 + 1))
    maps = torch.nn.functional.interpolate(torch.from_numpy(low), size=(h, w), mode="bilinear").numpy()
    return maps[:, :38] * 0.8, maps[:, 38:] * 0.4 + 0.1


@pytest.mark.parametrize("maps", ["random", "people"])
def test_parse_matches_torch_reference(maps: str) -> None:
    settings = PafSettings(max_peaks=12)
    if maps == "random":
        paf, heat = random_maps((10, 12), batch=2, seed=1)
    else:
        paf, heat, _ = people_maps([(0, 0), (1, 10)], (22, 20))
    net = parse_network(heat.shape[2:], settings)
    out = Executor(net, dtype=torch.float64)({"paf": paf, "heatmap": heat})
    out = {k: v.numpy() for k, v in out.items()}
    ref = torch_parse(torch.from_numpy(paf), torch.from_numpy(heat), settings)
    assert out["peak_counts"].min() >= 1 and (out["limb_scores"] > NO_LIMB).any()
    assert_same_parse(out, ref, 1e-10)


def test_smoothing_is_scipys_gaussian_filter() -> None:
    scipy_ndimage = pytest.importorskip("scipy.ndimage")
    settings = PafSettings(max_peaks=4)
    paf, heat = random_maps((6, 5), batch=1, seed=2)
    net = parse_network((6, 5), settings)
    smooth = next(n for n in Executor(net).tensor_names if n.startswith("parse/smooth/cols"))
    resized = next(n for n in Executor(net).tensor_names if n.startswith("parse/heatmap/resize"))
    out = Executor(net, keep=[smooth, resized], dtype=torch.float64)({"paf": paf, "heatmap": heat})
    up = out[resized].numpy()[0]
    expected = np.stack([scipy_ndimage.gaussian_filter(c, sigma=3) for c in up])  # mode "reflect", truncate 4
    assert len(gaussian_kernel(3.0)) == 25
    # the kernel is FP32 in the engine (rounded once, ~3e-8 here); a wrong border mode would be ~1e-2 off
    np.testing.assert_allclose(out[smooth].numpy()[0], expected, rtol=0, atol=1e-7)


def test_bicubic_is_cv2_inter_cubic() -> None:
    """The resize the parse uses (and torch's) is cv2's INTER_CUBIC: Keys A = -0.75, half-pixel, clamped taps."""
    rng = np.random.default_rng(0)
    low = rng.standard_normal((1, 1, 5, 7))
    up = torch.nn.functional.interpolate(torch.from_numpy(low), scale_factor=8, mode="bicubic",
                                         align_corners=False).numpy()[0, 0]

    def weights(t: float) -> np.ndarray:
        a = -0.75
        d = np.abs(np.array([1 + t, t, 1 - t, 2 - t]))
        far = a * d ** 3 - 5 * a * d ** 2 + 8 * a * d - 4 * a
        return np.where(d <= 1, (a + 2) * d ** 3 - (a + 3) * d ** 2 + 1, far)

    def axis(n_out: int, n_in: int) -> np.ndarray:
        m = np.zeros((n_out, n_in))
        for o in range(n_out):
            src = (o + 0.5) / 8 - 0.5
            i0 = int(np.floor(src))
            for tap, wgt in zip(range(i0 - 1, i0 + 3), weights(src - i0)):
                m[o, min(max(tap, 0), n_in - 1)] += wgt
        return m

    np.testing.assert_allclose(axis(40, 5) @ low[0, 0] @ axis(56, 7).T, up, atol=1e-12)


def test_parse_fp16_network_keeps_fp32() -> None:
    """In an FP16 network the parse layers still compute in FP32 (its constants are FP32)."""
    model, _ = small_model()
    net = model.define(precision="fp16", input_size=(32, 32), max_peaks=4)
    d = net.definition
    parse_layers = [d.get_layer(i) for i in range(d.num_layers) if d.get_layer(i).name.startswith("parse/")]
    half = net.trt.DataType.HALF
    assert parse_layers and not any(layer.get_output(i).dtype == half for layer in parse_layers
                                    for i in range(layer.num_outputs))
    assert sum(layer.type == net.trt.LayerType.CONVOLUTION for layer in parse_layers) == 2  # the Gaussian smoothing


# --- people from the parsed outputs ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def people_parse() -> tuple[dict, list]:
    """The engine parse of synthetic maps: two full people and a partial one (3 parts)."""
    paf, heat, joints = people_maps([(0, 0), (1, 10), (0, 18)], (22, 24), joints_of={2: [0, 1, 2]})
    net = parse_network(heat.shape[2:], PafSettings(max_peaks=6))
    return {k: v.numpy() for k, v in Executor(net)({"paf": paf, "heatmap": heat}).items()}, joints


def test_people_from_the_engine_parse(people_parse) -> None:
    """The full people come back where the maps put them; the partial one is dropped (fewer than 4 parts)."""
    out, joints = people_parse
    found = image_people(out["peaks"][0], out["peak_counts"][0], out["limb_scores"][0], image_height=176)
    assert len(found) == 2
    for person in found:
        assert len(person.found()) == 18 and person.score > 18
        error = min(np.abs(person.keypoints[:, :2] - j).max() for j in joints[:2])
        assert error < 1.5


def random_scene(rng: np.random.Generator, low: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, int]:
    """Maps of 2-7 people at random places and one random scale (neighbours overlap: their blobs merge, the later
    one's PAF overwrites the earlier one's), about a third of them with random parts missing."""
    h, w = low
    count = int(rng.integers(2, 8))
    offsets = [(rng.uniform(-4, h - 12), rng.uniform(-3, w - 6)) for _ in range(count)]
    partial = {p: sorted(rng.choice(18, int(rng.integers(2, 17)), replace=False).tolist())
               for p in range(count) if rng.random() < 0.35}
    paf, heat, _ = people_maps(offsets, low, joints_of=partial, scale=float(rng.uniform(0.6, 1.0)))
    # noise: translated copies of one person give limb totals equal up to rounding, which the two summation
    # orders (torch's mean, the reference's sum) would break differently
    return paf + rng.normal(0, 0.02, paf.shape), heat, count


def test_assembly_equals_the_reference_on_random_scenes() -> None:
    """People from the parsed outputs (netdef.pose.paf) equal those of the reference's own PAF line integrals and
    assembly (bench/openpose_reference.py: Python loops over every candidate pair) on the same peaks and the same
    upsampled PAF, on fresh random scenes."""
    from tests.bench_scripts import load_bench

    ref = load_bench("openpose_reference")
    seed = int(np.random.SeedSequence().entropy % 2**32)
    rng = np.random.default_rng(seed)
    settings = PafSettings(max_peaks=24)
    people_total = 0
    for _ in range(3):
        paf, heat, count = random_scene(rng, (30, 40))
        peaks, counts, limb_scores = (t.numpy() for t in torch_parse(torch.from_numpy(paf), torch.from_numpy(heat),
                                                                     settings))
        assert counts.max() <= settings.max_peaks, f"seed {seed}: peaks truncated"
        height = heat.shape[2] * 8
        # float64 outputs: FP32 ones would round near-equal limb totals alike and could flip a greedy choice
        ours = image_people(peaks[0], counts[0], limb_scores[0], height)
        # the reference's inputs: every part's peaks (x, y, score, id) in raster order, the PAF at input size
        part_peaks, _ = canonical(peaks[0], counts[0], limb_scores[0])
        ids = np.cumsum([0] + [len(p) for p in part_peaks])
        listed = [[(int(x), int(y), float(v), int(ids[q] + i)) for i, (x, y, v) in enumerate(p)]
                  for q, p in enumerate(part_peaks)]
        paf_up = torch.nn.functional.interpolate(torch.from_numpy(paf), scale_factor=8, mode="bicubic",
                                                 align_corners=False)[0].permute(1, 2, 0).numpy()
        candidates, rows = ref.assemble(listed, *ref.connect(listed, paf_up, height))
        theirs = ref.keypoints(candidates, rows)
        assert len(ours) == len(theirs), f"seed {seed}"
        people_total += len(ours)
        by_position = lambda kp: kp[:, :2].tolist()  # noqa: E731  found parts first differ, misses are zeros
        for a, b in zip(sorted((p.keypoints for p in ours), key=by_position), sorted(theirs, key=by_position)):
            np.testing.assert_array_equal(a, b, err_msg=f"seed {seed}")
        np.testing.assert_allclose(sorted(p.score for p in ours), sorted(rows[:, -2]), rtol=1e-9,
                                   err_msg=f"seed {seed}")
    assert people_total >= 2, f"seed {seed}: the scenes must hold people"


def test_people_map_back_to_the_image_and_draw(people_parse, tmp_path) -> None:
    from PIL import Image

    from netdef.detect import Letterbox
    from netdef.pose.draw import draw_people
    from netdef.pose.openpose import people

    out, joints = people_parse
    info = Letterbox(scale=0.5, pad_x=4.0, pad_y=0.0, original_size=(352, 376), input_size=(176, 192))
    (found,) = people(out, [info])
    assert len(found) == 2
    for person in found:
        assert min(np.abs(person.keypoints[:, :2] - (j - (4, 0)) * 2).max() for j in joints[:2]) < 3
    with pytest.raises(ValueError, match="outputs='parsed'"):
        people({"paf": out["peaks"]}, [info])
    blank = np.zeros((352, 376, 3), np.uint8)
    draw_people(blank, found, tmp_path / "people.png")
    drawn = np.asarray(Image.open(tmp_path / "people.png"))
    assert drawn.shape == blank.shape and (drawn > 0).any(axis=2).sum() > 1000


def test_preprocess_is_the_references_normalisation() -> None:
    from netdef.pose.openpose import preprocess

    rgb = np.random.default_rng(3).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    x, info = preprocess(rgb, (48, 64))
    np.testing.assert_array_equal(x, rgb[:, :, ::-1].transpose(2, 0, 1) / np.float32(256) - np.float32(0.5))
    assert (info.scale, info.pad_x, info.pad_y) == (1.0, 0.0, 0.0)
    x, info = preprocess(rgb[:, :32], (48, 64))  # a narrow image: centred, the grey border normalises to 0
    assert (info.scale, info.pad_x, info.original_size) == (1.0, 16.0, (48, 32))
    assert not x[:, :, :16].any() and not x[:, :, 48:].any()
    np.testing.assert_array_equal(x[:, :, 16:48], rgb[:, :32, ::-1].transpose(2, 0, 1) / np.float32(256) - 0.5)


def test_infer_cli_prints_people(tmp_path, capsys) -> None:
    """`netdef infer` on an OpenPose engine through the netdef executor (its sidecar gives size and parse)."""
    import json

    from PIL import Image

    from netdef.cli import main
    from netdef.engine import save_engine
    from weights_export.pytorch import export_module

    ref = torch_body_pose(BodyConfig(stages=2, width_div=16), seed=2)
    export_module(ref, tmp_path / "op.h5", "openpose-body", progress=False)
    model = OpenPose.from_hdf5(tmp_path / "op.h5")
    plan = model.build(input_size=(48, 64), max_peaks=4, settings=BuildSettings(batch=(1, 1, 2), progress=False))
    engine = save_engine(plan, tmp_path / "op.engine")
    image = tmp_path / "crowd.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (60, 90, 3), dtype=np.uint8)).save(image)
    assert main(["infer", str(engine), "--executor", "netdef", "--weights", str(tmp_path / "op.h5"),
                 "--image", str(image), "--json", str(tmp_path / "people.json")]) == 0
    assert f"{image}: " in capsys.readouterr().out
    result = json.loads((tmp_path / "people.json").read_text())
    assert result["arch"] == "openpose-body" and isinstance(result["results"][0]["people"], list)


# --- engines, export --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("outputs", ["raw", "parsed"])
def test_engine_builds(outputs: str) -> None:
    model, _ = small_model()
    settings = BuildSettings(precision="fp16", batch=(1, 2, 4), progress=False)
    plan = model.build(input_size=(64, 48), settings=settings, outputs=outputs, max_peaks=8)
    shapes = {o["name"]: o["max"] for o in plan.meta["outputs"]}
    if outputs == "raw":
        assert shapes == {"paf": [4, 38, 8, 6], "heatmap": [4, 19, 8, 6]}
    else:
        assert shapes == {"peaks": [4, 18, 8, 3], "peak_counts": [4, 18], "limb_scores": [4, 19, 8, 8]}
        assert plan.meta["max_peaks"] == 8 and plan.meta["outputs_kind"] == "parsed"
    assert len(plan.data) > 100_000


def test_int8_quantizes_the_network_not_the_parse_nor_the_output_convs() -> None:
    """Every conv but the last stage's two reads INT8 input and kernel; each stage's concatenation shares one scale
    with its inputs (one group across stages: `features` enters every concat), nothing is requantized; the parse
    (FP32, its smoothing convs included) carries no Q/DQ; the INT8 definition builds and verifies."""
    from netdef.quantize.placement import check_placement
    from networks.openpose import output_convs

    model, _ = small_model()
    fp32 = model.define(input_size=(32, 32), max_peaks=4)
    amax = {name: 2.0 + 0.1 * i for i, name in enumerate(fp32.quant.calibration_names())}
    net = model.define(precision="int8", input_size=(32, 32), max_peaks=4, calibration=amax)
    report = check_placement(net)
    convs = [name.rsplit(".", 1)[0] for name, _ in BodyPoseModule(SMALL).named_parameters() if name.endswith(".weight")]
    int8 = {w.layer for w in report.weighted if w.int8_input and w.int8_weights}
    assert int8 == set(convs) - set(output_convs(SMALL)) and len(int8) == len(convs) - 2
    assert report.requantized == [] and report.float_residuals == []
    [group] = [g for g in fp32.quant.groups.groups() if "concat_stage2" in g]
    assert {f"concat_stage{s}" for s in range(2, SMALL.stages + 1)} | {"model0.relu_conv4_4_CPM"} <= set(group)
    assert report.same_scale(*(m for m in group if report.site(m)))
    assert not [r for s in report.activations for r in s.readers if r.startswith("parse/")]
    assert net.meta["int8"]["quantized_tensors"] == len(report.activations) + len(int8)
    raw = model.define(precision="int8", input_size=(32, 48), outputs="raw", calibration=amax)
    assert verify_network(raw, model.reference(), model.sample_input(2, (32, 48), seed=3)).ok
    assert len(raw.build(BuildSettings(precision="int8", progress=False)).data) > 100_000


def test_export_hzzone_checkpoint(tmp_path, full_reference: torch.nn.Module) -> None:
    """body_pose_model.pth holds CMU's layer names without the block prefix: it exports and builds as is."""
    from netdef.commands.export import export_checkpoint

    ref = full_reference
    state = ref.state_dict()
    flat = {k.split(".", 1)[1]: v for k, v in state.items()}
    assert len(flat) == len(state)
    torch.save(flat, tmp_path / "body_pose_model.pth")
    export_checkpoint("openpose-body", str(tmp_path / "body_pose_model.pth"), str(tmp_path / "op.h5"),
                      progress=False)
    model = OpenPose.from_hdf5(tmp_path / "op.h5")
    assert model.config == BodyConfig()
    x = model.sample_input(1, (16, 16))
    out = Executor(model.define(input_size=(16, 16), outputs="raw"))({"input": x})
    with torch.no_grad():
        paf, heat = ref(torch.from_numpy(x))
    assert relative_error(out["paf"], paf) < 1e-4 and relative_error(out["heatmap"], heat) < 1e-4
