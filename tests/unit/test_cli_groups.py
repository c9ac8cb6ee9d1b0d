"""The command table of `runlog` matches what each command group registers."""

from __future__ import annotations

import argparse
import subprocess
import sys

from runlog.cli._app import COMMAND_GROUP_OF, _group, build_parser


def _command_names(parser: argparse.ArgumentParser) -> list[str]:
    names: list[str] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            names.extend(action.choices)
    return names


def test_every_group_registers_exactly_the_commands_the_table_gives_it() -> None:
    """Each command is registered by the group the table names, and no other."""
    for group in dict.fromkeys(COMMAND_GROUP_OF.values()):
        commands = argparse.ArgumentParser().add_subparsers()
        _group(group).register(commands)
        expected = [name for name, owner in COMMAND_GROUP_OF.items() if owner == group]
        assert list(commands.choices) == expected, group


def test_full_parser_lists_every_command_in_table_order() -> None:
    """`runlog --help` lists every command, in the table's order."""
    assert _command_names(build_parser()) == list(COMMAND_GROUP_OF)


def test_parser_for_one_command_holds_only_its_group() -> None:
    """The parser main builds for `show` holds show and tail only."""
    assert _command_names(build_parser("show")) == ["show", "tail"]
    assert _command_names(build_parser("nonsense")) == list(COMMAND_GROUP_OF)


def test_ls_does_not_import_the_groups_of_other_commands() -> None:
    """`runlog ls` loads neither diff, fleet nor web code (start-up time, #16)."""
    code = (
        "import sys\n"
        "from runlog.cli import main\n"
        "main(['ls', '--runs-dir', sys.argv[1]])\n"
        "loaded = sorted(m for m in sys.modules if m.startswith("
        "('runlog.cli._cmd_', 'runlog.fleet', 'runlog.web', 'runlog.summary._diff')))\n"
        "print(' '.join(loaded))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, "/nonexistent-runs"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert out.stdout.split() == ["runlog.cli._cmd_ls"]
