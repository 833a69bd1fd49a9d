"""The `sizeup` command line. Each stage keeps its commands in its own module; this file only
wires them together and turns a SizeupError into a clear message and a non-zero exit."""

from __future__ import annotations

import sys

import typer

from sizeup.errors import SizeupError

app = typer.Typer(
    name="sizeup",
    help="How to scale: parametrize, verify, tune small, fit laws, plan big.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
    """sizeup: muP and friends, coordinate checks, sweeps, scaling laws and run plans."""


# --- registration: each stage adds its commands (imports stay light; torch loads lazily) ---
from sizeup import cli_train  # noqa: E402

cli_train.register(app)
from sizeup import cli_wsd  # noqa: E402

cli_wsd.register(app)
from sizeup import plan_cli  # noqa: E402

plan_cli.register(app)
from sizeup.sweep import cli as sweep_cli  # noqa: E402

sweep_cli.register(app)
from sizeup.diagnostics import cli as diagnostics_cli  # noqa: E402

diagnostics_cli.register(app)
from sizeup.laws import cli as laws_cli  # noqa: E402

laws_cli.register(app)


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the app; a SizeupError prints its message and exits with code 2."""
    try:
        # Non-standalone click returns the code of a typer.Exit instead of exiting: pass it on.
        rc = app(args=argv, standalone_mode=False)
        if isinstance(rc, int) and rc != 0:
            sys.exit(rc)
    except SizeupError as e:
        typer.secho(f"error: {e}", fg=typer.colors.RED, err=True)
        sys.exit(2)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except typer.Abort:
        typer.secho("aborted", fg=typer.colors.RED, err=True)
        sys.exit(130)
    except Exception as e:
        # Usage errors (unknown option, bad value) from click, or from the click that typer
        # vendors (typer._click): print click's own message, not a traceback.
        if _is_click_usage_error(e):
            e.show()
            sys.exit(e.exit_code)
        raise


def _is_click_usage_error(e: BaseException) -> bool:
    return any(c.__name__ == "ClickException" and "click" in c.__module__
               for c in type(e).__mro__) and hasattr(e, "show")

if __name__ == "__main__":  # pragma: no cover
    main()
