"""The ``embedops`` command: parse → commands.X → render. Nothing else lives here.

One module per command group; each registers its commands on the shared ``app``.
"""

import sys

import typer
from typer.main import get_command_name

from embedops.cli import capacity, core, curate, evaluate, migrate, monitor, thresholds  # noqa: F401  (registers the commands)
from embedops.cli.common import Commands, app


def main() -> None:
    app_for(sys.argv[1:])()


def app_for(args: list[str]) -> typer.Typer:
    """The command tree a command line needs: only the group or command it names, when it names one.

    Typer turns every registered function into a click command before it parses anything, reading each
    one's signature and type hints: 0.04 s of every command for the ~50 of them. The root's options
    (``--debug``, ``--version``) are flags, so the first argument that is not an option is the name;
    anything else (``--help``, a misspelt name) gets the whole tree and its usual answers.
    """
    name = next((a for a in args if not a.startswith("-")), None)
    groups = [g for g in app.registered_groups if g.name == name]
    commands = [c for c in app.registered_commands if (c.name or get_command_name(getattr(c.callback, "__name__", ""))) == name]
    if not groups and not commands:
        return app
    trimmed = typer.Typer(cls=Commands, add_completion=False, no_args_is_help=True, help=app.info.help)
    trimmed.registered_callback = app.registered_callback
    trimmed.registered_groups, trimmed.registered_commands = groups, commands
    return trimmed


__all__ = ["app", "app_for", "main"]
