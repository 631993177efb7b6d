"""The ``distillnerf`` command: one front door for every package's tools.

Subcommands are discovered through the ``distillnerf.commands`` entry-point group. Each entry point names a
function ``add_parser(subparsers, name)`` that adds its parser and sets ``func`` (called with the parsed
arguments, returning an exit code). The model library, the training package and the ROS package each register
their own commands, so this module never imports the packages that depend on it.
"""

from __future__ import annotations

import argparse
import sys
from importlib.metadata import entry_points

ENTRY_POINT_GROUP = "distillnerf.commands"


def image_size(text: str) -> tuple[int, int]:
    """argparse type for image sizes written ``WIDTHxHEIGHT`` (e.g. 228x128), shared by every command."""
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT such as 228x128, got {text!r}") from None
    if width <= 0 or height <= 0:
        raise argparse.ArgumentTypeError(f"image size must be positive, got {text!r}")
    return width, height


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, str]]:
    """Build the parser from the installed entry points; return it and the commands that failed to load."""
    parser = argparse.ArgumentParser(
        prog="distillnerf",
        description="DistillNeRF: camera-only 3D perception. Each command is provided by an installed package.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    unavailable: dict[str, str] = {}
    for entry_point in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: ep.name):
        try:
            add_parser = entry_point.load()
        except ImportError as error:  # e.g. rclpy missing: the other commands still work
            unavailable[entry_point.name] = f"{type(error).__name__}: {error}"
            continue
        add_parser(subparsers, entry_point.name)
    if unavailable:
        parser.epilog = "unavailable here: " + "; ".join(f"{name} ({why})" for name, why in unavailable.items())
    return parser, unavailable


def main(argv: list[str] | None = None) -> int:
    parser, unavailable = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    if args.command in unavailable:  # pragma: no cover - argparse rejects unknown commands first
        print(f"distillnerf {args.command}: unavailable: {unavailable[args.command]}", file=sys.stderr)
        return 2
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
