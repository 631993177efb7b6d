"""The ``distillnerf`` front door lists the commands its installed packages register."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import entry_points

from distillnerf.cli import ENTRY_POINT_GROUP, build_parser, main


def registered_commands() -> set[str]:
    return {ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)}


def test_help_lists_every_registered_command():
    result = subprocess.run([sys.executable, "-m", "distillnerf.cli", "--help"], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    for name in registered_commands():
        assert name in result.stdout, f"{name} missing from --help"


def test_every_registered_command_loads():
    _, unavailable = build_parser()
    assert unavailable == {}


def test_no_command_prints_help_and_fails(capsys):
    assert main([]) == 2
    assert "usage: distillnerf" in capsys.readouterr().out
