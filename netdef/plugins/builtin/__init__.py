"""Custom layers shipped with netdef (importing this package registers them)."""
from netdef.plugins.builtin.shuffle import ChannelShuffle
from netdef.plugins.builtin.yolo import YoloLayer, yolo_decode_native, yolo_decode_reference

__all__ = ["ChannelShuffle", "YoloLayer", "yolo_decode_native", "yolo_decode_reference"]
