"""The `sizeup` command line. Each stage keeps its commands in its own module; this file only
wires them together and turns a SizeupError into a clear message and a non-zero exit."""

from __future__ import annotations

import sys
import warnings
from typing import Any

import typer

from sizeup.errors import SizeupError, StoreWarning

app = typer.Typer(
    name="sizeup",
    help="How to scale: parametrize, verify, tune small, fit laws, plan big.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        from sizeup import __version__

        typer.echo(f"sizeup {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """sizeup: muP and friends, coordinate checks, sweeps, scaling laws and run plans."""


# --- registration: each stage's commands live in their own module of this package; imports stay
# light (torch and the stage code load inside the commands, so `sizeup --help` is fast).
from sizeup.cli import coord_check, export, laws, plan, sweep, train, wsd  # noqa: E402

for _module in (train, wsd, plan, sweep, coord_check, laws, export):
    _module.register(app)


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the app; a SizeupError prints its message and exits with code 2."""
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _one_line(warnings.showwarning)
            # Non-standalone click returns the code of a typer.Exit instead of exiting: pass it on.
            rc = app(args=argv, standalone_mode=False)
        if isinstance(rc, int) and rc != 0:
            sys.exit(rc)
    except SizeupError as e:
        typer.secho(f"error: {e}", fg=typer.colors.RED, err=True)
        sys.exit(2)
    except OSError as e:
        if e.filename is None:
            raise
        # a path the user gave that cannot be read or written: one line, no traceback
        typer.secho(f"error: {e.filename}: {e.strerror}", fg=typer.colors.RED, err=True)
        sys.exit(2)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except typer.Abort:
        typer.secho("aborted", fg=typer.colors.RED, err=True)
        sys.exit(130)
    except Exception as e:
        # Usage errors (unknown option, bad value) from click, or from the click that typer
        # vendors (typer._click): click's own message as one line, not a traceback.
        if _is_click_usage_error(e):
            line = _usage_line(e)
            if line:  # empty: click showed the help (a group called with nothing)
                typer.secho(f"error: {line}", fg=typer.colors.RED, err=True)
            sys.exit(e.exit_code)
        raise


def _one_line(default: Any) -> Any:
    """showwarning that prints a StoreWarning (rows a reader left out) as one 'warning:' line
    on stderr, and every other warning as Python does."""

    def show(message: Any, category: type[Warning], *args: Any, **kwargs: Any) -> None:
        if issubclass(category, StoreWarning):
            typer.secho(f"warning: {message}", fg=typer.colors.YELLOW, err=True)
        else:
            default(message, category, *args, **kwargs)

    return show


def _usage_line(e: Any) -> str:
    """Click's message for a bad option or value as one line (click prints a usage block, a
    hint and the message on three), with where the command's options are listed."""
    message = " ".join(e.format_message().split())
    ctx = getattr(e, "ctx", None)
    if not message or ctx is None:
        return message
    return f"{message} (`{ctx.command_path} --help` lists what it takes)"


def _is_click_usage_error(e: BaseException) -> bool:
    return any(
        c.__name__ == "ClickException" and "click" in c.__module__ for c in type(e).__mro__
    ) and hasattr(e, "show")


if __name__ == "__main__":  # pragma: no cover
    main()
