"""How every command prints: tables and lines in one of three formats (``--format``).

* ``rich``: boxes and colour, for a terminal. Off a terminal (forced with ``--format rich``) the
  console is made as wide as the widest table, so no cell is cut to a stub.
* ``markdown``: full-width pipe tables and plain lines that read the same in a log, a file, a
  CI job or an issue. The default whenever stdout is not a terminal.
* ``json``: one JSON document on stdout (the command's result: the plan, the fit, the coordinate
  check, ...); the lines a command would print go to stderr, so stdout always parses.

A command builds neutral ``Table`` records (cells are text, or ``(text, rich style)``) and hands
them to ``Output``; nothing else in the CLI prints a table.

    with Output(fmt) as out:
        out.table(Table("FLOPs", ["quantity", "value"], [["params", "6.9B"]]))
        out.line("wrote ", ("fit.json", "bold"))
        out.data({"params": 6.9e9})   # what --format json prints
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from typing import Any

import typer

from sizeup.choices import OUTPUT_FORMATS, OutputFormat, choices_help
from sizeup.errors import check_choice

# A cell or a part of a line: plain text, or (text, rich style) for colour on a terminal.
Cell = str | tuple[str, str]

FORMAT = typer.Option(
    None,
    "--format",
    help=choices_help(OUTPUT_FORMATS)
    + " (default: rich on a terminal, markdown otherwise; json prints one JSON document).",
    show_default=False,
)


@dataclass
class Table:
    """A table as data: title, column names, rows of cells, an optional caption below it, and
    the columns to right-align (numbers)."""

    title: str
    columns: list[str]
    rows: list[list[Cell]] = field(default_factory=list)
    caption: str = ""
    right: tuple[str, ...] = ()

    def add(self, *cells: Cell) -> None:
        """Append a row."""
        self.rows.append(list(cells))

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe: title, columns, caption and the rows as plain text."""
        return {
            "title": self.title,
            "columns": list(self.columns),
            "rows": [[text(c) for c in r] for r in self.rows],
            "caption": self.caption,
        }


def text(cell: Cell) -> str:
    """The plain text of a cell."""
    return cell if isinstance(cell, str) else cell[0]


def resolve_format(fmt: str | None, stream: Any = None) -> OutputFormat:
    """The format asked for, or the default: rich on a terminal, markdown elsewhere."""
    if fmt is None:
        s = stream if stream is not None else sys.stdout
        return "rich" if _isatty(s) else "markdown"
    check_choice("format", fmt, OUTPUT_FORMATS)
    return fmt  # type: ignore[return-value]


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


class Output:
    """One command's output in one format. Use as a context manager: with ``json`` the document
    (``data``, else the tables) is printed when the block ends without an error."""

    def __init__(self, fmt: str | None = None, stream: Any = None) -> None:
        self.stream = stream if stream is not None else sys.stdout
        self.format: OutputFormat = resolve_format(fmt, self.stream)
        self._tables: list[Table] = []
        self._data: Any = None

    def __enter__(self) -> Output:
        return self

    def __exit__(self, exc_type: Any, *_: Any) -> None:
        if exc_type is None and self.format == "json":
            doc = (
                self._data
                if self._data is not None
                else {"tables": [t.to_dict() for t in self._tables]}
            )
            print(dumps(doc), file=self.stream, flush=True)

    @property
    def is_json(self) -> bool:
        """True when stdout carries one JSON document (lines then go to stderr)."""
        return self.format == "json"

    # --- what commands call ----------------------------------------------------------------
    def table(self, t: Table) -> None:
        """Print a table (with json: keep it for the document, unless ``data`` replaces it)."""
        if self.format == "json":
            self._tables.append(t)
        elif self.format == "markdown":
            self._write(markdown_table(t) + "\n")
        else:
            self._rich(rich_table(t))

    def line(self, *parts: Cell, err: bool = False) -> None:
        """Print one line of text (stderr with ``err``, or always with json)."""
        if self.format == "rich" and not err:
            from rich.text import Text

            self._rich(Text.assemble(*parts))
            return
        stream = sys.stderr if (err or self.format == "json") else self.stream
        print("".join(text(p) for p in parts), file=stream, flush=True)

    def warning(self, message: str) -> None:
        """'warning: ...' on stderr (yellow on a terminal)."""
        typer.secho(f"warning: {message}", fg=typer.colors.YELLOW, err=True)

    def wrote(self, *paths: Any) -> None:
        """One 'wrote a, b and c' line naming every file written."""
        names = [str(p) for p in paths]
        if not names:
            return
        listed = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
        self.line(f"wrote {listed}")

    def data(self, doc: Any) -> None:
        """The document ``--format json`` prints (ignored by the other formats)."""
        self._data = doc

    # --- rendering -------------------------------------------------------------------------
    def _write(self, s: str) -> None:
        self.stream.write(s)
        self.stream.flush()

    def _rich(self, renderable: Any) -> None:
        from rich.console import Console

        if _isatty(self.stream):
            Console(file=self.stream).print(renderable)
            return
        # Off a terminal rich assumes 80 columns and folds cells into stubs: size the console
        # to what the renderable needs instead.
        wide = Console(file=self.stream, width=10_000)
        width = max(80, wide.measure(renderable).maximum)
        Console(file=self.stream, width=width).print(renderable)


def rich_table(t: Table) -> Any:
    """The table as a rich Table (names never folded)."""
    from rich.table import Table as RichTable
    from rich.text import Text

    rt = RichTable(title=t.title, caption=t.caption or None)
    for i, c in enumerate(t.columns):
        rt.add_column(
            c, justify="right" if c in t.right else "left", no_wrap=(i == 0), overflow="fold"
        )
    for row in t.rows:
        rt.add_row(*(Text(c) if isinstance(c, str) else Text(c[0], style=c[1]) for c in row))
    return rt


def markdown_table(t: Table) -> str:
    """The table as Markdown: a bold title, a pipe table with every cell whole, the caption."""
    out = [f"**{t.title}**", ""] if t.title else []
    out.append("| " + " | ".join(_escape(c) for c in t.columns) + " |")
    out.append("|" + "|".join("---:" if c in t.right else "---" for c in t.columns) + "|")
    out += ["| " + " | ".join(_escape(text(c)) for c in row) + " |" for row in t.rows]
    if t.caption:
        out += ["", t.caption]
    return "\n".join(out) + "\n"


def _escape(s: str) -> str:
    return s.replace("|", "\\|").replace("\n", " ")


def dumps(doc: Any) -> str:
    """Indented strict JSON (sizeup.config.json_safe: NaN and infinities as null, numpy scalars
    as numbers; paths and other objects as text)."""
    from sizeup.config import json_safe

    return json.dumps(json_safe(doc), indent=2, allow_nan=False, default=str)
