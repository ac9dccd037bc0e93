"""The sidecar is not trusted blindly: malformed or edited sidecars are refused, the engine and a rebuilt
definition must be what it describes, and the executor runs only the weights the engine was built from."""
from __future__ import annotations

import argparse
import json
import shutil

import numpy as np
import pytest

from netdef.engine import BuildSettings, EngineFileError, check_loaded_engine, describe, read_sidecar, sidecar_path
from netdef.commands.infer import definition_builder
from netdef.runtime import factory
from netdef.sidecar import SidecarError, seal
from tests.kill_lane import CFG
from tests.test_runtime_fixtures import FakeEngine, tiny_network, tiny_weights


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny Darknet network exported twice (two weight seeds) and built from the first, with its sidecar."""
    from netdef.cli import main
    from weights_export.darknet_synth import write_darknet_weights

    work = tmp_path_factory.mktemp("sidecar")
    (work / "tiny.cfg").write_text(CFG)
    for name, seed in (("w", 1), ("other", 2)):
        write_darknet_weights(CFG, work / f"{name}.weights", seed=seed)
        assert main(["export", "--darknet-cfg", str(work / "tiny.cfg"), "--darknet-weights",
                     str(work / f"{name}.weights"), "--out", str(work / f"{name}.h5"), "--no-progress"]) == 0
    assert main(["build", "darknet", "--weights", str(work / "w.h5"), "--out", str(work / "e.engine"),
                 "--batch", "1:2:3", "--nms", "raw", "--no-progress"]) == 0
    return work


def _edited(tiny, tmp_path, edit, reseal: bool):
    """A copy of the engine whose sidecar got `edit` (resealed, as a careful forger would, or not)."""
    for suffix in ("", ".json"):
        shutil.copy(tiny / f"e.engine{suffix}", tmp_path / f"e.engine{suffix}")
    meta = json.loads(sidecar_path(tmp_path / "e.engine").read_text())
    edit(meta)
    sidecar_path(tmp_path / "e.engine").write_text(json.dumps(seal(meta) if reseal else meta))
    return tmp_path / "e.engine"


@pytest.mark.parametrize("text, message", [
    ("[1, 2]", "not a sidecar: expected a JSON object, got list"),
    ("{}", "missing field 'plan_sha256'"),
    ("{not json", "not valid JSON"),
])
def test_sidecar_that_is_not_an_object_is_refused(tiny, tmp_path, text, message):
    engine = _edited(tiny, tmp_path, lambda m: None, reseal=True)
    sidecar_path(engine).write_text(text)
    with pytest.raises(EngineFileError, match=message):
        read_sidecar(engine)


@pytest.mark.parametrize("key, value, message", [
    ("batch", "1:2:3", "field 'batch' is '1:2:3', expected \\[min, opt, max\\]"),
    ("batch", [3, 2, 1], "expected \\[min, opt, max\\] with 1 <= min <= opt <= max"),
    ("precision", "fp8", "field 'precision' is 'fp8', expected fp32, fp16 or int8"),
    ("plan_bytes", "12", "field 'plan_bytes' is '12', expected a positive integer"),
    ("input_size", [0, 32], "field 'input_size' is \\[0, 32\\], expected \\[H, W\\] of positive integers"),
    ("inputs", [{"name": "input"}], "field 'inputs'"),
    ("weights_file", "../../etc/passwd", "field 'weights_file'"),
    ("score_threshold", 7, "field 'score_threshold' is 7"),
    ("define_options", ["nms", "raw"], "field 'define_options' is \\['nms', 'raw'\\], expected an object"),
])
def test_sidecar_fields_of_the_wrong_type_are_refused(tiny, tmp_path, key, value, message):
    engine = _edited(tiny, tmp_path, lambda m: m.__setitem__(key, value), reseal=True)
    with pytest.raises(EngineFileError, match=message):
        read_sidecar(engine)


def test_hand_edited_sidecar_is_refused(tiny, tmp_path):
    engine = _edited(tiny, tmp_path, lambda m: m.__setitem__("precision", "fp16"), reseal=False)
    with pytest.raises(EngineFileError, match="do not match its checksum sidecar_sha256 \\(edited after the build"):
        read_sidecar(engine)


def test_sidecar_that_contradicts_itself_is_refused(tiny, tmp_path):
    engine = _edited(tiny, tmp_path, lambda m: m.__setitem__("batch", [1, 4, 8]), reseal=True)
    with pytest.raises(EngineFileError, match="batch \\[1, 4, 8\\] but input 'input' has the batch profile \\[1, 2, 3\\]"):
        read_sidecar(engine)
    engine = _edited(tiny, tmp_path, lambda m: m.__setitem__("input_size", [64, 64]), reseal=True)
    with pytest.raises(EngineFileError, match="input_size \\[64, 64\\] but input 'input' is \\[32, 32\\]"):
        read_sidecar(engine)


def test_engine_must_be_what_the_sidecar_describes():
    net = tiny_network(tiny_weights())
    meta = describe(net.definition, BuildSettings(batch=(1, 2, 5), progress=False))
    check_loaded_engine(meta, FakeEngine(net, (1, 2, 5), None), "fake.engine")  # the truth passes
    wrong_profile = describe(net.definition, BuildSettings(batch=(1, 4, 8), progress=False))
    with pytest.raises(EngineFileError, match="'x' profile max is \\[5, 3, 8, 8\\] in the engine, \\[8, 3, 8, 8\\]"):
        check_loaded_engine(wrong_profile, FakeEngine(net, (1, 2, 5), None), "fake.engine")
    renamed = json.loads(json.dumps(meta))
    renamed["outputs"][0]["name"] = "logits"
    with pytest.raises(EngineFileError, match="engine has output 'sum', the sidecar does not"):
        check_loaded_engine(renamed, FakeEngine(net, (1, 2, 5), None), "fake.engine")
    half = json.loads(json.dumps(meta))
    half["inputs"][0]["dtype"] = "HALF"
    with pytest.raises(EngineFileError, match="'x' is FLOAT in the engine, HALF in the sidecar"):
        check_loaded_engine(half, FakeEngine(net, (1, 2, 5), None), "fake.engine")


class FixedProfileEngine(FakeEngine):
    """As TensorRT 8.6 reports an engine built with a fixed batch profile (min == max): every dim static."""

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        lo, _, hi = self.batch
        return tuple(lo if d < 0 and lo == hi else d for d in super().get_tensor_shape(name))


def test_a_fixed_batch_profile_may_come_back_static_and_nothing_looser():
    """A dynamic dim whose profile allows one value may read as that value (OpenPose's parse engine, batch
    (1, 1, 1), on TensorRT 8.6); any other value, or a static dim where the profile is a range, is refused."""
    net = tiny_network(tiny_weights())
    fixed = describe(net.definition, BuildSettings(batch=(1, 1, 1), progress=False))
    assert fixed["inputs"][0]["shape"] == [-1, 3, 8, 8] and fixed["outputs"][1]["shape"] == [-1, 4]
    check_loaded_engine(fixed, FixedProfileEngine(net, (1, 1, 1), None), "fake.engine")
    check_loaded_engine(fixed, FakeEngine(net, (1, 1, 1), None), "fake.engine")  # reported dynamic: fine too
    other = describe(net.definition, BuildSettings(batch=(2, 2, 2), progress=False))
    with pytest.raises(EngineFileError, match="'x' has shape \\[1, 3, 8, 8\\] in the engine, \\[-1, 3, 8, 8\\] in"):
        check_loaded_engine(other, FixedProfileEngine(net, (1, 1, 1), None), "fake.engine")
    ranged = describe(net.definition, BuildSettings(batch=(1, 1, 2), progress=False))
    with pytest.raises(EngineFileError, match="'pooled' has shape \\[1, 4\\] in the engine, \\[-1, 4\\] in the sidecar"):
        check_loaded_engine(ranged, FixedProfileEngine(net, (1, 1, 1), None), "fake.engine")


def open_session(engine, executor, weights=None):
    """What `netdef infer ENGINE --executor netdef [--weights W]` opens."""
    args = argparse.Namespace(engine=engine, weights=weights, arch=None, precision=None)
    return factory.open_session(engine, executor, definition_builder(args))


def test_executor_refuses_weights_the_engine_was_not_built_from(tiny):
    with pytest.raises(SidecarError, match="other.h5: these are not the weights .*e.engine was built from"):
        open_session(tiny / "e.engine", "netdef", weights=tiny / "other.h5")
    with open_session(tiny / "e.engine", "netdef", weights=tiny / "w.h5") as given, \
            open_session(tiny / "e.engine", "netdef") as default:  # the recorded w.h5 beside the engine
        assert given.meta["weights_file"] == default.meta["weights_file"] == "w.h5"
        x = np.random.default_rng(0).random((2, 3, 32, 32), dtype=np.float32)
        a, b = given.infer(x), default.infer(x)
        assert all(np.array_equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("edit", ["input size", "precision"])
def test_executor_refuses_a_resealed_sidecar_that_changes_the_network(tiny, tmp_path, edit):
    def change(meta):
        if edit == "precision":
            meta["precision"] = "fp16"
        else:  # consistently: the input size and the input's shape
            meta["input_size"] = [64, 64]
            meta["inputs"][0]["shape"][2:] = [64, 64]
            for key in ("min", "opt", "max"):
                meta["inputs"][0][key][2:] = [64, 64]

    engine = _edited(tiny, tmp_path, change, reseal=True)
    shutil.copy(tiny / "w.h5", tmp_path / "w.h5")
    with pytest.raises(SidecarError, match="differs from the one the engine was built from|does not describe"):
        open_session(engine, "netdef")
