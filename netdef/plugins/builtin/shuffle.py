"""ChannelShuffle (ShuffleNet): interleave the channels of `groups` groups; a reshape-transpose-reshape."""
from __future__ import annotations

from typing import Any

from netdef import functional as F
from netdef.plugins.description import CustomLayer, CustomLayerError, Field, Fields
from netdef.plugins.registry import register


@register
class ChannelShuffle(CustomLayer):
    """(B, C, *spatial) -> channels viewed as (groups, C/groups), transposed, flattened back."""

    name = "ChannelShuffle"
    version = "1"
    groups = Field(int)

    def check_fields(self, fields: Fields, where: str) -> None:
        if fields.groups < 1:
            raise CustomLayerError(f"{where}: groups must be >= 1, got {fields.groups}")

    def _split(self, channels: int, fields: Fields, where: str) -> int:
        if channels % fields.groups:
            raise CustomLayerError(f"{where}: {channels} channels do not split into {fields.groups} groups")
        return channels // fields.groups

    def reference(self, fields: Fields, x: Any) -> Any:
        b, c, *spatial = x.shape
        per = self._split(c, fields, "ChannelShuffle")
        return x.reshape(b, fields.groups, per, *spatial).transpose(1, 2).reshape(x.shape)

    def native(self, net: Any, fields: Fields, x: Any) -> Any:
        _, c, *spatial = (int(d) for d in x.shape)
        per = self._split(c, fields, f"{net.path or 'channel_shuffle'}: tensor {x.name!r}")
        grouped = F.reshape(x, (0, fields.groups, per, *spatial), op="groups")
        swapped = F.transpose(grouped, 1, 2, op="swap")
        return F.reshape(swapped, (0, c, *spatial), op="merge")
