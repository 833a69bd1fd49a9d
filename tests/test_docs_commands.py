"""Every `sizeup ...` command shown in README.md and docs/*.md parses: its subcommand exists and
so does every option it names, with the right number of values (the command line's own parser,
before values are converted, so placeholders such as DIR or N stand for values). A documented flag
that does not exist fails here (docs/bring-your-own-model.md once showed `sizeup flops gpt
--layers ... --experts ...`, whose flags were --n-layer and --n-experts).

Doc notation is read as a person reads it: `[--flag]` optional parts are kept, `{a,b}` and
`a|b` take their first choice, `...` and what follows a `#` comment or a shell redirect are
dropped. A command shown inline (`sizeup train --checkpoint-every`) is checked for its
subcommand and option names only.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import typer

from sizeup.cli import app

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"```[a-z]*\n(.*?)```", re.S)
INLINE = re.compile(r"`(sizeup [^`]+)`")
COMMAND = re.compile(r"(?:^|\s)(?:python3? -m |-m )?(sizeup\s.*)$")


def _fenced(text: str) -> list[str]:
    """The `sizeup` command lines of the fenced blocks (continuation lines joined)."""
    out = []
    for block in FENCE.findall(text):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.strip().removeprefix("$ ")
            m = COMMAND.search(line)
            if m and (line.startswith(("sizeup ", "python")) or "torchrun" in line):
                out.append(m.group(1))
    return out


def _tokens(command: str) -> list[str]:
    """The command's words after `sizeup`, doc notation read as a person reads it."""
    command = re.split(r"\s#|\s>|\s\|\s|\s2>", command)[0]
    command = re.sub(r"\{([^},]+)[^}]*\}", r"\1", command)  # {a,b}: the first choice
    command = command.replace("[", " ").replace("]", " ")
    words = shlex.split(command)[1:]
    return [w.split("|")[0] for w in words if w not in ("...", "…") and not w.startswith("<")]


def _cases() -> list[tuple[str, str, bool]]:
    out = []
    for path in DOCS:
        text = path.read_text()
        out += [(path.name, c, True) for c in _fenced(text)]
        out += [(path.name, c, False) for c in INLINE.findall(text)]
    return out


CASES = _cases()


def _resolve(words: list[str]) -> tuple[object, list[str], list[str]]:
    """(the command, the words after its name, the names on the way) through the groups."""
    cmd = typer.main.get_command(app)
    names = ["sizeup"]
    while hasattr(cmd, "commands") and words and not words[0].startswith("-"):
        name = words.pop(0)
        assert name in cmd.commands, f"no command `{' '.join([*names, name])}`"
        cmd = cmd.commands[name]
        names.append(name)
    return cmd, words, names


def _option_names(cmd: object) -> set[str]:
    ctx = cmd.context_class(cmd)  # type: ignore[attr-defined]
    params = cmd.get_params(ctx)  # type: ignore[attr-defined]  # with --help
    return {o for p in params for o in (*p.opts, *p.secondary_opts)}


def test_the_docs_show_commands():
    assert len(CASES) > 100  # the extraction works: a change of format would hide everything


@pytest.mark.parametrize("where,command,full", CASES, ids=[f"{w}:{c[:60]}" for w, c, _ in CASES])
def test_documented_command_parses(where, command, full):
    cmd, words, names = _resolve(_tokens(command))
    if not full:  # inline mention: its options exist
        flags = [w.split("=")[0] for w in words if w.startswith("--")]
        unknown = [f for f in flags if f not in _option_names(cmd)]
        assert not unknown, f"{where}: `{command}` names {unknown}, not options of {names}"
        return
    # the command's own parser: unknown options and missing values fail; values are not
    # converted, so placeholders (DIR, N) stand for them
    ctx = cmd.context_class(cmd, info_name=" ".join(names))  # type: ignore[attr-defined]
    cmd.make_parser(ctx).parse_args(args=words)  # type: ignore[attr-defined]
