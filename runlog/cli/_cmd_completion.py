"""``runlog completion``: shell completion scripts made from the parser itself."""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from .._records import LEVEL_NUMBERS
from ..errors import RunlogError
from ..reading import _runs
from ._args import DEFAULT_RUNS_DIR, PROG, add_command

SHELLS: Final = ("bash", "zsh", "fish")
FUNCTION: Final = "_runlog"
GLOBAL_OPTIONS: Final = ("-h", "--help", "--version", "--no-pager")
# option values completed from a fixed list although the option has no
# `choices` (its type checks the value instead)
_VALUE_WORDS: Final = {"level": tuple(LEVEL_NUMBERS)}


@dataclass(frozen=True)
class Option:
    """One option of a command, as a completion script needs it."""

    flags: tuple[str, ...]
    takes_value: bool
    words: tuple[str, ...]  # the values to offer; empty: any
    kind: str  # what a value is: "dir", "file", "run" or "" (anything)
    help: str


@dataclass(frozen=True)
class Command:
    """One subcommand: its name, one-line help, options and operand kind."""

    name: str
    help: str
    options: tuple[Option, ...]
    operand: str  # "run", "dir", "file", "word" or "" (takes none)
    operand_words: tuple[str, ...]


def _kind(name: str) -> str:
    upper = name.upper()
    if "RUN" in upper and "DIR" not in upper:
        return "run"
    if "DIR" in upper:
        return "dir"
    if "FILE" in upper:
        return "file"
    return ""


def describe_commands(commands: Any) -> list[Command]:
    """
    Every subcommand registered in *commands* (an argparse subparsers
    action), with its options, in ``runlog --help`` order.
    """
    helps = {action.dest: action.help or "" for action in commands._choices_actions}
    found: list[Command] = []
    for name, parser in commands.choices.items():
        options: list[Option] = []
        operand = ""
        operand_words: tuple[str, ...] = ()
        for action in parser._actions:
            if action.help == argparse.SUPPRESS:
                continue
            metavar = action.metavar if isinstance(action.metavar, str) else ""
            choices = tuple(str(c) for c in action.choices or ())
            if action.option_strings:
                words = choices or _VALUE_WORDS.get(action.dest, ())
                options.append(
                    Option(
                        flags=tuple(action.option_strings),
                        takes_value=action.nargs != 0,
                        words=words,
                        kind="" if words else _kind(metavar or action.dest),
                        help=action.help or "",
                    )
                )
            elif not operand:
                operand = "word" if choices else _kind(metavar or action.dest)
                operand = operand or "file"
                operand_words = choices
        found.append(
            Command(name, helps.get(name, ""), tuple(options), operand, operand_words)
        )
    return found


def _plain(text: str) -> str:
    """Help text safe inside any of the three scripts' quotes."""
    return re.sub(r"[^A-Za-z0-9 ,.;()/+=<>_-]", "", text.replace("'", ""))[:80]


# --- bash ---------------------------------------------------------------------------

_BASH_HEAD: Final = r"""# runlog completion for bash: source <(runlog completion bash)
__runlog_runs() {
    # run ids are read line by line, never expanded by the shell
    local dir=runs i id
    for ((i = 1; i < COMP_CWORD; i++)); do
        if [[ ${COMP_WORDS[i]} == --runs-dir ]]; then dir=${COMP_WORDS[i+1]}; fi
    done
    while IFS= read -r id; do
        [[ $id == "$cur"* ]] && COMPREPLY+=("$id")
    done < <(runlog completion --run-ids "$dir" 2>/dev/null)
    local file
    while IFS= read -r file; do COMPREPLY+=("$file"); done < <(compgen -f -- "$cur")
}
"""


def bash_script(commands: list[Command]) -> str:
    """The bash completion script for *commands*."""
    names = " ".join(command.name for command in commands)
    globals_ = " ".join(GLOBAL_OPTIONS)
    lines = [
        _BASH_HEAD,
        f"{FUNCTION}() {{",
        '    local cur="${COMP_WORDS[COMP_CWORD]}"',
        '    local prev="${COMP_WORDS[COMP_CWORD-1]}"',
        '    local cmd="" i',
        "    COMPREPLY=()",
        "    for ((i = 1; i < COMP_CWORD; i++)); do",
        '        case "${COMP_WORDS[i]}" in',
        "            -*) ;;",
        '            *) cmd="${COMP_WORDS[i]}"; break ;;',
        "        esac",
        "    done",
        '    if [[ -z "$cmd" ]]; then',
        f'        COMPREPLY=($(compgen -W "{names} {globals_}" -- "$cur"))',
        "        return 0",
        "    fi",
        '    case "$cmd" in',
    ]
    for command in commands:
        lines.append(f"        {command.name})")
        valued = [option for option in command.options if option.takes_value]
        if valued:
            lines.append('            case "$prev" in')
            for option in valued:
                lines.append(f"                {'|'.join(option.flags)})")
                lines.append(
                    f"                    {_bash_values(option.words, option.kind)}"
                )
                lines.append("                    return 0 ;;")
            lines.append("            esac")
        flags = " ".join(flag for option in command.options for flag in option.flags)
        lines.append('            if [[ "$cur" == -* ]]; then')
        lines.append(
            f'                COMPREPLY=($(compgen -W "{flags} --no-pager" -- "$cur"))'
        )
        lines.append("                return 0")
        lines.append("            fi")
        lines.append(
            f"            {_bash_values(command.operand_words, command.operand)}"
        )
        lines.append("            ;;")
    lines += [
        "    esac",
        "    return 0",
        "}",
        f"complete -o filenames -F {FUNCTION} {PROG}",
        "",
    ]
    return "\n".join(lines)


def _bash_values(words: tuple[str, ...], kind: str) -> str:
    if words:
        return f'COMPREPLY=($(compgen -W "{" ".join(words)}" -- "$cur"))'
    if kind == "run":
        return "__runlog_runs"
    if kind == "dir":
        return 'COMPREPLY=($(compgen -d -- "$cur"))'
    if kind in ("file", "word"):
        return 'COMPREPLY=($(compgen -f -- "$cur"))'
    return ":"


# --- zsh ----------------------------------------------------------------------------


def zsh_script(commands: list[Command]) -> str:
    """The zsh completion script for *commands* (``compdef``, native ``_arguments``)."""
    lines = [
        f"#compdef {PROG}",
        "# runlog completion for zsh: source <(runlog completion zsh)",
        "__runlog_runs() {",
        "    local -a ids",
        "    local dir=runs",
        "    (( ${words[(I)--runs-dir]} )) && dir=${words[${words[(I)--runs-dir]}+1]}",
        '    ids=(${(f)"$(runlog completion --run-ids "$dir" 2>/dev/null)"})',
        "    _alternative 'runs:run id:compadd -a ids' 'files:file:_files'",
        "}",
        f"{FUNCTION}() {{",
        "    local -a commands",
        "    commands=(",
    ]
    lines += [f"        '{c.name}:{_plain(c.help)}'" for c in commands]
    lines += [
        "    )",
        "    local curcontext=$curcontext state line",
        "    _arguments -C \\",
        "        '(- *)--help[show help]' \\",
        "        '(- *)--version[show the version]' \\",
        "        '--no-pager[do not page the output]' \\",
        "        '1: :->command' \\",
        "        '*:: :->args'",
        "    case $state in",
        "        command) _describe 'command' commands ;;",
        "        args)",
        "            case $words[1] in",
    ]
    for command in commands:
        specs = [f"'{_zsh_option(option)}'" for option in command.options]
        specs.append("'--no-pager[do not page the output]'")
        if command.operand:
            action = _zsh_action(command.operand_words, command.operand)
            specs.append(f"'*:{command.operand}:{action}'")
        lines.append(f"                {command.name})")
        lines.append("                    _arguments \\")
        lines += [f"                        {spec} \\" for spec in specs[:-1]]
        lines.append(f"                        {specs[-1]} ;;")
    lines += ["            esac ;;", "    esac", "}", f"compdef {FUNCTION} {PROG}", ""]
    return "\n".join(lines)


def _zsh_action(words: tuple[str, ...], kind: str) -> str:
    if words:
        return f"({' '.join(words)})"
    return {"run": "__runlog_runs", "dir": "_files -/", "file": "_files"}.get(
        kind, "_files" if kind == "word" else " "
    )


def _zsh_option(option: Option) -> str:
    flags = option.flags
    names = "{" + ",".join(flags) + "}" if len(flags) > 1 else flags[0]
    exclusive = f"({' '.join(flags)})" if len(flags) > 1 else ""
    head = f"{exclusive}{names}[{_plain(option.help)}]"
    if not option.takes_value:
        return head
    return f"{head}:value:{_zsh_action(option.words, option.kind)}"


# --- fish ---------------------------------------------------------------------------


def fish_script(commands: list[Command]) -> str:
    """The fish completion script for *commands*."""
    c = f"complete -c {PROG}"
    lines = [
        "# runlog completion for fish: runlog completion fish | source",
        f"{c} -f",
        f"{c} -n __fish_use_subcommand -l help -d 'show help'",
        f"{c} -n __fish_use_subcommand -l version -d 'show the version'",
        f"{c} -l no-pager -d 'do not page the output'",
        "function __runlog_runs",
        "    set -l dir runs",
        "    set -l words (commandline -opc)",
        "    if set -l i (contains -i -- --runs-dir $words)",
        "        set dir $words[(math $i + 1)]",
        "    end",
        "    runlog completion --run-ids $dir 2>/dev/null",
        "end",
    ]
    for command in commands:
        about = _plain(command.help)
        lines.append(f"{c} -n __fish_use_subcommand -a {command.name} -d '{about}'")
        seen = f"-n '__fish_seen_subcommand_from {command.name}'"
        for option in command.options:
            parts = [c, seen]
            for flag in option.flags:
                if flag.startswith("--"):
                    parts.append(f"-l {flag[2:]}")
                else:
                    parts.append(f"-s {flag[1:]}")
            if option.takes_value:
                parts.append(_fish_values(option.words, option.kind))
            parts.append(f"-d '{_plain(option.help)}'")
            lines.append(" ".join(parts))
        if command.operand:
            lines.append(
                f"{c} {seen} {_fish_values(command.operand_words, command.operand)}"
            )
    lines.append("")
    return "\n".join(lines)


def _fish_values(words: tuple[str, ...], kind: str) -> str:
    if words:
        return f"-x -a '{' '.join(words)}'"
    if kind == "run":
        return "-r -F -a '(__runlog_runs)'"
    if kind in ("dir", "file", "word"):
        return "-r -F"
    return "-x"


SCRIPTS: Final = {"bash": bash_script, "zsh": zsh_script, "fish": fish_script}


def cmd_completion(args: argparse.Namespace) -> int:
    """``runlog completion SHELL``: print the completion script for SHELL."""
    if args.run_ids is not None:
        # only names a shell may offer as they are: no quoting, no expansion
        for run_id in _runs.list_run_ids(Path(args.run_ids)):
            print(run_id)
        return 0
    if args.shell is None:
        raise RunlogError(f"completion: name a shell: {', '.join(SHELLS)}")
    from ._app import build_parser  # every command, not only this group's

    commands = next(
        action
        for action in build_parser()._actions
        if isinstance(action, argparse._SubParsersAction)
    )
    print(SCRIPTS[args.shell](describe_commands(commands)), end="")
    return 0


def register(commands: Any) -> None:
    """Add ``completion`` to the ``runlog`` subcommands."""
    completion = add_command(
        commands,
        "completion",
        cmd_completion,
        "print a shell completion script: bash, zsh or fish",
        "Prints a completion script for SHELL, made from runlog's own options:\n"
        "commands, options, their choices (levels, formats), directories, and\n"
        "run ids read from RUNS_DIR (or --runs-dir on the command line) as you "
        "type.",
        [
            "source <(runlog completion bash)          # in ~/.bashrc",
            "source <(runlog completion zsh)           # in ~/.zshrc",
            "runlog completion fish | source           # in config.fish",
        ],
    )
    completion.add_argument("shell", nargs="?", choices=SHELLS, metavar="SHELL")
    completion.add_argument(
        "--run-ids",
        nargs="?",
        const=DEFAULT_RUNS_DIR,
        metavar="RUNS_DIR",
        help=argparse.SUPPRESS,
    )
