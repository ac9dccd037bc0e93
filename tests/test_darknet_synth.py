"""The synthesized Darknet cfgs keep YOLOv4's and YOLOv4-tiny's real structure."""
from __future__ import annotations

import pytest

from weights_export.darknet_synth import yolov4_cfg, yolov4_tiny_cfg


# --- structure checks -----------------------------------------------------------------------------------

@pytest.mark.parametrize("make, layers, heads, strides", [
    (yolov4_cfg, 162, [139, 150, 161], [8, 16, 32]),
    (yolov4_tiny_cfg, 38, [30, 37], [32, 16]),
])
def test_synthesized_cfg_has_the_real_structure(make, layers, heads, strides):
    from networks.darknet import plan
    from netdef.darknet_cfg import parse_cfg

    p = plan(parse_cfg(make(classes=80)))
    assert len(p.layers) == layers
    assert p.heads == heads
    assert [p.layers[i].stride for i in heads] == strides
    assert all(p.layers[i - 1].channels == 255 for i in heads)
    kinds = {s.type for s in p.layers}
    assert kinds >= {"convolutional", "route", "upsample", "yolo", "maxpool"}


def test_yolov4_uses_every_layer_feature():
    from networks.darknet import plan
    from netdef.darknet_cfg import parse_cfg

    p = plan(parse_cfg(yolov4_cfg()))
    acts = {s.options.get("activation") for s in p.layers if s.type == "convolutional"}
    assert acts == {"mish", "leaky", "linear"}
    assert any(s.type == "maxpool" and s.options["stride"] == 1 and s.options["size"] == 13 for s in p.layers)
    assert any(s.type == "route" and len(s.sources) == 4 for s in p.layers)
    assert sum(s.type == "shortcut" for s in p.layers) == 23
    tiny = plan(parse_cfg(yolov4_tiny_cfg()))
    assert sum(s.type == "route" and s.options["groups"] == 2 for s in tiny.layers) == 3
