"""Malformed Darknet input gets errors naming the cfg file and line (and the layer)."""
from __future__ import annotations

import re

import numpy as np
import pytest
from weights_export.darknet_synth import activations_cfg, write_darknet_weights, yolov4_tiny_cfg

from networks.yolov4 import YOLOv4
from weights_export.errors import DarknetCfgError, DarknetWeightsError


def _line_of(text: str, needle: str, occurrence: int = 1) -> int:
    lines = [i for i, line in enumerate(text.splitlines(), start=1) if line.strip() == needle]
    return lines[occurrence - 1]


def _write(tmp_path, text: str):
    cfg = tmp_path / "bad.cfg"
    cfg.write_text(text)
    return cfg


def test_unknown_layer_names_its_line(tmp_path):
    text = yolov4_tiny_cfg().replace("[upsample]", "[upsampling]")
    cfg = _write(tmp_path, text)
    with pytest.raises(DarknetCfgError) as err:
        YOLOv4.from_darknet(cfg, tmp_path / "unused.weights")
    assert f"bad.cfg:{_line_of(text, '[upsampling]')}:" in str(err.value)
    assert "upsampling" in str(err.value)


def test_route_to_missing_layer_names_its_line(tmp_path):
    text = yolov4_tiny_cfg().replace("layers=-1, 23", "layers=-1, 40")
    cfg = _write(tmp_path, text)
    with pytest.raises(DarknetCfgError) as err:
        YOLOv4.from_darknet(cfg, tmp_path / "unused.weights")
    assert f"bad.cfg:{_line_of(text, 'layers=-1, 40')}:" in str(err.value)
    assert "layer 34" in str(err.value) and "40" in str(err.value)


def test_route_backwards_past_the_first_layer_names_its_line(tmp_path):
    text = activations_cfg().replace("from=-3", "from=-9")
    cfg = _write(tmp_path, text)
    with pytest.raises(DarknetCfgError, match=rf"bad.cfg:{_line_of(text, 'from=-9')}:"):
        YOLOv4.from_darknet(cfg, tmp_path / "unused.weights")


def test_head_with_wrong_channel_count_names_the_yolo_line(tmp_path):
    text = activations_cfg(classes=3).replace("classes=3", "classes=4")
    cfg = _write(tmp_path, text)
    with pytest.raises(DarknetCfgError, match=rf"bad.cfg:{_line_of(text, '[yolo]')}:"):
        YOLOv4.from_darknet(cfg, tmp_path / "unused.weights")


def test_truncated_weights_name_the_layer_and_its_cfg_line(tmp_path):
    text = yolov4_tiny_cfg(width_div=8)
    cfg = _write(tmp_path, text)
    weights = write_darknet_weights(text, tmp_path / "tiny.weights")
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) - 4 * 1000])  # the last conv (layer 36, the second head) loses 1000 floats
    with pytest.raises(DarknetWeightsError) as err:
        YOLOv4.from_darknet(cfg, weights)
    message = str(err.value)
    conv_line = _line_of(text, "[convolutional]", occurrence=21)  # layer 36 is the 21st conv
    assert "layers.36.conv" in message and f"bad.cfg:{conv_line}: [convolutional] layer 36" in message
    assert "tiny.weights" in message


def test_extra_weights_are_an_error(tmp_path):
    text = activations_cfg()
    cfg = _write(tmp_path, text)
    weights = write_darknet_weights(text, tmp_path / "a.weights", extra_floats=7)
    with pytest.raises(DarknetWeightsError, match=r"found \d+.*extra data"):
        YOLOv4.from_darknet(cfg, weights)


def test_unsupported_options_name_their_line(tmp_path):
    text = activations_cfg().replace("[convolutional]", "[convolutional]\ndilation=2", 1)
    cfg = _write(tmp_path, text)
    weights = write_darknet_weights(activations_cfg(), tmp_path / "a.weights")
    with pytest.raises(DarknetCfgError, match=rf"bad.cfg:{_line_of(text, 'dilation=2')}:.*dilation"):
        YOLOv4.from_darknet(cfg, weights)


def test_missing_and_misshaped_weights_are_listed_together(tmp_path):
    text = activations_cfg()
    weights = write_darknet_weights(text, tmp_path / "a.weights")
    model = YOLOv4.from_darknet(_write(tmp_path, text), weights)
    broken = dict(model.weights)
    del broken["layers.1.bn.running_var"]
    broken["layers.4.conv.weight"] = np.zeros((8, 8, 1, 1), np.float32)
    with pytest.raises(ValueError) as err:
        YOLOv4(broken, None, cfg=text).define()
    message = str(err.value)
    assert re.search(r"missing: layers\.1\.bn\.running_var", message)
    assert re.search(r"shape mismatch: layers\.4\.conv\.weight", message)


def test_input_size_must_be_a_multiple_of_the_total_stride(tmp_path):
    text = yolov4_tiny_cfg(width_div=8)
    model = YOLOv4.from_darknet(_write(tmp_path, text), write_darknet_weights(text, tmp_path / "t.weights"))
    with pytest.raises(ValueError, match="multiples of 32"):
        model.define(input_size=(416, 400))
