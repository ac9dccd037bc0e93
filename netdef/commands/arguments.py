"""Argument types and checks the subcommands share: numbers in range, sizes, NMS settings, and the rule that
no output is written over an input (same path, or the same file through a link)."""
from __future__ import annotations

import argparse
import math
from typing import Any, Callable, Iterable

from netdef.atomic import refuse_overwriting_inputs

FLAGS = {"engine": "ENGINE", "json_out": "--json"}  # dests whose flag is not "--" + dest (positionals, renamed)


def int_in(low: int, high: int | None = None) -> Callable[[str], int]:
    """An argparse type: an integer in low..high (no upper bound when high is None)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r}: expected an integer") from None
        if high is not None and not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value}: expected an integer in {low}..{high}")
        if value < low:
            raise argparse.ArgumentTypeError(f"{value}: expected an integer >= {low}")
        return value
    parse.__name__ = "integer"
    return parse


positive_int = int_in(1)
non_negative_int = int_in(0)


def float_in(low: float, high: float, low_open: bool = False, high_open: bool = False) -> Callable[[str], float]:
    """An argparse type: a finite number in [low, high] (open ends where asked)."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r}: expected a number") from None
        inside = math.isfinite(value) and (value > low if low_open else value >= low) and \
            (value < high if high_open else value <= high)
        if not inside:
            interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
            raise argparse.ArgumentTypeError(f"{text}: expected a number in {interval}")
        return value
    parse.__name__ = "number"
    return parse


def parse_size(text: str) -> tuple[int, int]:
    """"224" -> (224, 224); "416,416" or "480x640" -> (H, W); positive integers only."""
    parts = [p for p in text.replace("x", ",").split(",") if p.strip()]
    try:
        values = tuple(int(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"input size {text!r}: expected H,W or N") from None
    if len(values) == 1:
        values = values * 2
    if len(values) != 2 or min(values) <= 0:
        raise argparse.ArgumentTypeError(f"input size {text!r}: expected H,W with positive integers")
    return values  # type: ignore[return-value]


def add_nms_arguments(group: Any, what: str) -> None:
    """--max-detections, --score-threshold, --iou-threshold with their ranges."""
    from netdef.detect import TRT_TOPK_LIMIT

    group.add_argument("--max-detections", type=int_in(1, TRT_TOPK_LIMIT), default=None,
                       help=f"K fixed output slots per image ({what})")
    group.add_argument("--score-threshold", type=float_in(0, 1, high_open=True), default=None,
                       help=f"keep detections scoring above this, in [0, 1) ({what})")
    group.add_argument("--iou-threshold", type=float_in(0, 1), default=None,
                       help=f"suppress boxes overlapping a better one by more than this IoU, in [0, 1] ({what})")


def add_calib_cache_argument(parser: Any, help_text: str, **kwargs: Any) -> None:
    """The INT8 calibration cache, `--calib-cache` on every command (`--calibration` kept as an alias)."""
    parser.add_argument("--calib-cache", "--calibration", dest="calib_cache", help=help_text, **kwargs)


def refuse_same_files(args: argparse.Namespace, outputs: Iterable[str], inputs: Iterable[str],
                      extra_outputs: dict[str, Any] | None = None, extra_inputs: dict[str, Any] | None = None) -> None:
    """Refuse, before any work, an output argument naming the same file as an input argument.

    Names are argparse dests; the message uses the flags (`--out`, `--weights`). Values may be lists
    (`--image` repeated).
    """
    def flag(dest: str) -> str:
        return FLAGS.get(dest) or "--" + dest.replace("_", "-")

    def entries(dests: Iterable[str]) -> dict[str, Any]:
        found: dict[str, Any] = {}
        for dest in dests:
            value = getattr(args, dest, None)
            for k, v in enumerate(value if isinstance(value, list) else [value]):
                if v is not None:
                    found[flag(dest) + (f" #{k + 1}" if isinstance(value, list) and len(value) > 1 else "")] = v
        return found

    refuse_overwriting_inputs({**entries(outputs), **(extra_outputs or {})}, {**entries(inputs), **(extra_inputs or {})})
