"""Walk a Typer app's commands and say which options and arguments ``--help`` leaves
undescribed."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import typer
from rich.text import Text

# Added by Typer itself, with its own help.
_BUILT_IN = frozenset({"help", "install_completion", "show_completion"})


def _commands(command: Any, path: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], Any]]:
    yield path, command
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        yield from _commands(sub, (*path, name))


def problems(app: typer.Typer, name: str) -> list[str]:
    """Every option or argument whose help, as ``--help`` shows it, says nothing, or whose
    text Rich took for markup and dropped ("[env X]" vanishes unless escaped)."""
    found = []
    for path, command in _commands(typer.main.get_command(app), (name,)):
        for param in command.params:
            if param.name in _BUILT_IN:
                continue
            where = f"{' '.join(path)} {'/'.join(param.opts)}"
            written = getattr(param, "help", None) or ""
            shown = Text.from_markup(written).plain  # what Typer's Rich help prints
            if shown != written.replace("\\[", "["):
                found.append(f"{where}: Rich drops part of {written!r}: shows {shown!r}")
            elif len(re.findall(r"[A-Za-z]{2,}", re.sub(r"\[[^]]*\]", "", shown))) < 2:
                found.append(f"{where}: no description ({written!r})")
    return found
