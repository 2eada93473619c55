"""The ``cxrsearch`` entry point and the single error boundary of the program.

Library code raises :class:`~cxrsearch.errors.CxrSearchError`; :class:`_ErrorBoundary` turns it into
one line ``error: <file>: <what is wrong>`` on stderr and exit status 1. Unexpected exceptions are
reported the same way (with their type), and only ``--debug`` (or ``CXRSEARCH_DEBUG=1``) lets a
traceback through. Command modules must not import torch/transformers/timm/captum at module level:
``cxrsearch --help`` stays fast.
"""

from __future__ import annotations

import os
import sys

import typer
from typer.core import TyperGroup

from cxrsearch import __version__
from cxrsearch.errors import CxrSearchError


def _debug_from_env() -> bool:
    return os.environ.get("CXRSEARCH_DEBUG", "") not in ("", "0")


_state = {"debug": _debug_from_env()}


def _fail(message: str, code: int = 1) -> None:
    typer.echo(f"error: {' '.join(str(message).split())}", err=True)
    raise typer.Exit(code)


BROKEN_PIPE_STATUS = 141
"""128 + SIGPIPE: what a shell reports for a command whose reader closed the pipe."""


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so that the interpreter's final flush into the closed pipe does not
    print a second error."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # not a real file (a test runner's capture)
        pass


class _ErrorBoundary(TyperGroup):
    """Converts every exception escaping a command into one line on stderr."""

    def invoke(self, ctx: typer.Context):  # type: ignore[override]  # typer's Context subclasses click's
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, typer.TyperException):
            raise  # usage errors (exit 2), explicit exits and aborts keep typer's own handling
        except CxrSearchError as exc:
            if _state["debug"]:
                raise
            _fail(str(exc))
        except KeyboardInterrupt:
            if _state["debug"]:
                raise
            _fail(
                "interrupted (work done so far is kept; re-run the same command to resume, with --resume for train)",
                code=130,
            )
        except BrokenPipeError:  # the reader left (`... --json | head -1`): stop quietly, as shell tools do
            _silence_stdout()
            raise typer.Exit(BROKEN_PIPE_STATUS) from None
        except Exception as exc:  # the boundary: nothing but one line reaches a user
            if _state["debug"]:
                raise
            _fail(f"internal error: {type(exc).__name__}: {exc} (re-run with --debug for the traceback)")


app = typer.Typer(
    cls=_ErrorBoundary,
    name="cxrsearch",
    help=(
        "Chest X-ray case search: index Open-i studies, search by text/image/example with label filters, explain hits."
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"cxrsearch {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks instead of one-line errors."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    _state["debug"] = debug or _debug_from_env()  # set on every invocation: nothing leaks between runs


def _register() -> None:
    """Attach the command groups. Each module imports only light dependencies at module level."""
    from cxrsearch.cli import data as data_cli

    app.add_typer(data_cli.app, name="data")
    from cxrsearch.cli import models as models_cli

    app.add_typer(models_cli.app, name="models")
    from cxrsearch.cli import train as train_cli

    app.command("train")(train_cli.train)
    from cxrsearch.cli import collections as collections_cli

    app.add_typer(collections_cli.app, name="collections")
    from cxrsearch.cli import explain as explain_cli

    app.command("explain")(explain_cli.explain)
    from cxrsearch.cli import index as index_cli
    from cxrsearch.cli import search as search_cli

    app.command("index")(index_cli.index)
    app.command("search")(search_cli.search)
    from cxrsearch.cli import demo as demo_cli

    app.command("demo")(demo_cli.demo)
    from cxrsearch.cli import evaluate as evaluate_cli

    app.command("evaluate")(evaluate_cli.evaluate)
    from cxrsearch.cli import serve as serve_cli

    app.command("serve")(serve_cli.serve)
    # (more command groups are registered below as they land)


_register()


def main() -> None:
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
