"""`netdef` console script. Each subcommand lives in netdef/commands/<name>.py and exposes
`add_parser(subparsers)` which registers itself with `set_defaults(func=run)`; `run(args) -> int`.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys

COMMANDS = ("info", "export", "build", "verify", "calibrate", "infer", "bench", "demo", "serve", "triton_repo")
# commands that define, build or run networks: they take --plugin MODULE (custom layers the user trusts)
PLUGIN_COMMANDS = ("build", "verify", "calibrate", "infer", "bench", "demo", "serve")


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="netdef", description="Rebuild PyTorch networks with the TensorRT "
                                     "network-definition API, layer by layer, no ONNX.")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv: TensorRT verbose)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        module = importlib.import_module(f"netdef.commands.{name}")
        module.add_parser(sub)
        if name in PLUGIN_COMMANDS:
            sub.choices[name].add_argument(
                "--plugin", action="append", default=[], metavar="MODULE",
                help="import MODULE for the custom layers it registers (repeatable; installed 'netdef.plugins' "
                     "entry points load too). Modules named in engine sidecars are never imported.")
    return parser


def setup_logging(verbosity: int) -> None:
    level = logging.WARNING if verbosity == 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    # TensorRT's INFO is chatty: one step quieter than ours unless -vv.
    logging.getLogger("tensorrt").setLevel(max(level, logging.WARNING) if verbosity < 2 else logging.DEBUG)


def main(argv: list[str] | None = None) -> int:
    parser = make_parser()
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        if getattr(args, "plugin", None) is not None:
            from netdef.plugins import load_plugins

            load_plugins(args.plugin)
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a clear one-line error for users; -v shows the traceback
        if args.verbose:
            raise
        print(f"netdef {args.command}: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
