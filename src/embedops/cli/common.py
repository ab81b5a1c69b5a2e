"""What every command group shares: the app, consoles, common options, error mapping, progress and tables."""


import json
import logging
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Any, NoReturn, Optional

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text
# typer (pinned) vendors click as typer._click: its parser raises these and keeps this context stack,
# not the click package's.
from typer._click.core import Context
from typer._click.exceptions import ClickException, NoArgsIsHelpError, UsageError
from typer._click.globals import get_current_context
from typer.core import TyperGroup

from embedops.catalog.secrets import redact
from embedops.errors import EmbedopsError

_JSON_META = "embedops.json"


class Commands(TyperGroup):
    """The ``embedops`` command group. A usage error (an unknown option or command, a missing
    argument, a value out of range) is reported as every other error is: an ``error:`` line, a
    ``hint:`` line, exit code 2, and under ``--json`` a JSON object on stdout. Click raises these
    while it parses, before a command's :func:`handle_errors` runs, so they are caught here, around
    the parsing of the whole command line and the dispatch to the command. An error a command
    raises outside its own :func:`handle_errors` (while rendering its result) is caught here too."""

    def make_context(self, info_name: str | None, args: list[str], parent: Context | None = None,
                     **extra: Any) -> Context:
        as_json = wants_json(args)
        with _usage_errors(as_json):
            ctx = super().make_context(info_name, args, parent, **extra)
        ctx.meta[_JSON_META] = as_json
        return ctx

    def invoke(self, ctx: Context) -> Any:
        as_json = bool(ctx.meta.get(_JSON_META))
        with _usage_errors(as_json), handle_errors(as_json):
            return super().invoke(ctx)


def wants_json(args: list[str]) -> bool:
    """Whether ``--json`` is among the options of a command line (before a ``--``)."""
    return "--json" in (args[: args.index("--")] if "--" in args else args)


app = typer.Typer(cls=Commands, add_completion=False, no_args_is_help=True,
                  help="Operate an embedding pipeline like a database.")


def _print_version(value: bool) -> None:
    if value:
        from embedops import __version__

        sys.stdout.write(f"embedops {__version__}\n")
        raise typer.Exit()


# What a terminal would act on rather than show: C0/C1 control characters but newline and tab
# (escape sequences that clear the screen, set the title, rewrite a line), bidirectional overrides
# (text that reads other than it is), and lone surrogates (which no terminal encoding can write).
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def literal(text: str) -> str:
    """``text`` as it is, with each unsafe character written as its Python escape (ESC → ``\\x1b``).

    Document text, queries, ids, paths and names come from sources anyone may write to; printed
    raw, they could drive the reader's terminal.

    >>> literal("a\\x1b[2Jb")
    'a\\\\x1b[2Jb'
    """
    if text.isascii() and text.isprintable():
        return text
    return _UNSAFE.sub(lambda m: ascii(m.group())[1:-1], text)


class LiteralConsole(Console):
    """A console that prints every string literally: no markup ("list[/i]" is text, not a closing tag),
    no emoji codes (":x:" stays ":x:"), and unsafe characters escaped (:func:`literal`).

    Strings (printed, or in table cells and titles) pass through :meth:`render_str`, so this is the
    one place; a :class:`Text` built by hand (``styled``) escapes its own parts.
    """

    def render_str(self, text: str, **kwargs: Any) -> Text:
        kwargs.update(markup=False, emoji=False)
        return super().render_str(literal(text), **kwargs)


out = LiteralConsole(markup=False, emoji=False)
err = LiteralConsole(stderr=True, markup=False, emoji=False)


def styled(word: str, style: str, rest: str = "") -> Text:
    """``word`` in ``style`` followed by plain ``rest``; both printed literally."""
    return Text.assemble((literal(word), style), literal(rest))

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output on stdout.")]
WsOpt = Annotated[
    Optional[Path],
    typer.Option("--workspace", "-w", help="Workspace dir (default: nearest embedops.toml upwards, or $EMBEDOPS_WORKSPACE)."),
]
PlanOpt = Annotated[bool, typer.Option("--plan", help="Dry run: say what would happen, change nothing.")]
# Where the embedding stage runs (sync, migrate backfill); docs/scale.md.
ExecutorOpt = Annotated[str, typer.Option("--executor", help="Where embedding runs: local (this process, default) or ray (a Ray Data actor pool; pip install 'embedops[ray]').")]
AddressOpt = Annotated[Optional[str], typer.Option("--address", help="Ray: auto (the cluster this machine is in), ray://HOST:10001 (Ray Client); default: start a local Ray instance.")]
ActorsOpt = Annotated[Optional[int], typer.Option("--actors", help="Ray: model replicas (default: one per CPU of the cluster, or per GPU with --gpus-per-actor).")]
GpusPerActorOpt = Annotated[float, typer.Option("--gpus-per-actor", help="Ray: GPUs each model replica reserves (0: CPU only; 0.5 puts two on a GPU).")]
BatchSizeOpt = Annotated[Optional[int], typer.Option("--batch-size", help="Documents (sync) or chunks (backfill) per batch: one transaction, one Ray block (default: batch_size in embedops.toml).")]


def executor_options(executor: str, address: str | None, actors: int | None, gpus_per_actor: float,
                     batch_size: int | None) -> Any:
    """The ``--executor`` options as :class:`~embedops.execute.ExecutorOptions` (ConfigError when they do not fit)."""
    from embedops.execute import ExecutorOptions

    return ExecutorOptions(executor, address, actors, gpus_per_actor, batch_size)  # type: ignore[arg-type]  # checked there


def emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


EXIT_INTERNAL = 70  # EX_SOFTWARE: a bug, not the user's input
EXIT_INTERRUPTED = 130


@app.callback()
def _global_options(
    debug: Annotated[bool, typer.Option("--debug", help="Show the traceback of an unexpected error.")] = False,
    version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """Operate an embedding pipeline like a database."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("warning: %(message)s"))
    handler.setLevel(logging.WARNING)
    handler.addFilter(lambda record: record.name == "embedops")  # the library's own warnings; the server logs its own
    logger = logging.getLogger("embedops")
    if not any(getattr(h, "_embedops_cli", False) for h in logger.handlers):
        handler._embedops_cli = True  # type: ignore[attr-defined]  # one handler however many commands run
        logger.addHandler(handler)


def _debugging() -> bool:
    ctx = get_current_context(silent=True)
    return bool(ctx and ctx.find_root().params.get("debug"))


@contextmanager
def handle_errors(as_json: bool) -> Iterator[None]:
    """Map every error to one ``error:`` line, a ``hint:`` line and a documented exit code, once;
    under ``--json`` a JSON error object on stdout too. ``--debug`` adds the traceback of an
    unexpected error (an embedops bug or a library failure not translated yet)."""
    try:
        yield
    except EmbedopsError as exc:
        _fail(as_json, exc.to_dict(), exc.message, exc.hint, exc.exit_code)
    except KeyboardInterrupt:
        hint = "committed work is kept; run the same command again to resume"
        if as_json:
            emit_json({"error": "Interrupted", "message": "interrupted", "hint": hint})
        err.print(styled("interrupted", "yellow", f": {hint}"))
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except (typer.Exit, typer.Abort, ClickException):
        raise  # exits, and usage errors (Commands reports those)
    except Exception as exc:  # noqa: BLE001 - the one place unexpected errors become a clean exit
        if _debugging():
            err.print_exception()
        message = f"unexpected {type(exc).__name__}: {redact(str(exc)).strip() or 'no message'}"
        hint = "this is likely a bug in embedops: run the command again with --debug for the traceback, and report it"
        _fail(as_json, {"error": "InternalError", "message": message, "hint": hint}, message, hint, EXIT_INTERNAL)


@contextmanager
def _usage_errors(as_json: bool) -> Iterator[None]:
    try:
        yield
    except NoArgsIsHelpError:
        raise  # `embedops` (or a group) alone: the help, as click shows it
    except ClickException as exc:
        message = exc.format_message()
        ctx = getattr(exc, "ctx", None)
        command = " ".join(["embedops", *ctx.command_path.split()[1:]]) if ctx is not None else "embedops"
        hint = f"run `{command} --help` for its arguments and options"
        name = "UsageError" if isinstance(exc, UsageError) else type(exc).__name__
        _fail(as_json, {"error": name, "message": message, "hint": hint}, message, hint, exc.exit_code)


def _fail(as_json: bool, payload: dict[str, Any], message: str, hint: str | None, code: int) -> NoReturn:
    if as_json:
        emit_json(payload)
    err.print(styled("error:", "bold red", f" {message}"), highlight=False, soft_wrap=True)
    if hint:
        err.print(styled("hint:", "dim", f" {hint}"), highlight=False, soft_wrap=True)
    raise typer.Exit(code) from None


def progress_bars(enabled: bool) -> Callable[[str, int], Callable[[int], None]] | None:
    """A rich progress bar per long step, on stderr, only on a terminal."""
    if not enabled or not sys.stderr.isatty():
        return None
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    def factory(label: str, total: int) -> Callable[[int], None]:
        progress = Progress(TextColumn("{task.description}", markup=False), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), console=err, transient=True)
        task = progress.add_task(label, total=total)
        progress.start()
        done = 0

        def advance(n: int) -> None:
            nonlocal done
            done += n
            progress.advance(task, n)
            if done >= total:
                progress.stop()

        return advance

    return factory


def when(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="seconds")


def ago(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.0f}s"


def brief(details: dict[str, Any], limit: int = 160) -> str:
    """A ledger row's details on one line: scalars as key=value, collections by size."""
    parts = []
    for key, value in details.items():
        if value is None or value == [] or value == {}:
            continue
        if isinstance(value, list):
            value = f"[{len(value)}]"
        elif isinstance(value, dict):
            value = "{" + ", ".join(value) + "}" if len(value) <= 4 else f"{{{len(value)} keys}}"
        elif isinstance(value, float):
            value = f"{value:.4g}"
        parts.append(f"{key}={value}")
    text = " ".join(parts)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def price_note(prices: dict[str, dict[str, Any]]) -> str:
    """Each embedder's price and where it comes from (a shipped list price says its date), in-process ones unpriced
    in embedops.toml left out: ``oai $0.02/M tokens (default list price (2025-06))``."""
    shown = []
    for name, price in prices.items():
        if price["price_source"] == "in-process model":
            continue
        usd = price["price_per_million_tokens"]
        shown.append(f"{name} {'price unknown' if usd is None else f'${usd:.6g}/M tokens'} ({price['price_source']})")
    return "; ".join(shown)


# -- migrations -------------------------------------------------------------------


def render_table(data: dict[str, Any], title: str) -> None:
    t = Table(title=title, show_header=False)
    t.add_column("key", style="bold")
    t.add_column("value")
    for key, value in data.items():
        if isinstance(value, (dict, list)):
            value = json.dumps(value, default=str)[:160]
        elif value is None:
            value = "—"
        elif key.endswith("_at") and isinstance(value, (int, float)):
            value = when(value)
        elif isinstance(value, bool):
            value = "yes" if value else "no"
        t.add_row(key, str(value))
    out.print(t)


def parse_params(items: list[str]) -> dict[str, Any]:
    from embedops.errors import ConfigError

    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"bad --chunker-param {item!r}", hint="use KEY=VALUE, e.g. --chunker-param max_tokens=200")
        out[key] = int(value) if value.lstrip("-").isdigit() else value
    return out
