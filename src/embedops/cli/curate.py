"""``embedops quarantine``: documents curation held back, why, and releasing one."""


from typing import Annotated, Optional

import typer
from rich.table import Table

from embedops import commands
from embedops.cli.common import JsonOpt, PlanOpt, WsOpt, app, emit_json, handle_errors, out

quarantine_app = typer.Typer(no_args_is_help=True, help="Documents held back by curation: list, show, release.")
app.add_typer(quarantine_app, name="quarantine")

SourceOpt = Annotated[Optional[str], typer.Option(help="The document's source (needed when two sources hold the id).")]


@quarantine_app.command("list")
def quarantine_list(
    reason: Annotated[Optional[str], typer.Option(help="Only this reason: duplicate, near_duplicate, too_short, too_long, non_text, boilerplate, encoding, language.")] = None,
    source: Annotated[Optional[str], typer.Option(help="Only documents of this source.")] = None,
    released: Annotated[bool, typer.Option("--released", help="Also list documents released since they were quarantined.")] = False,
    as_json: JsonOpt = False,
    workspace: WsOpt = None,
) -> None:
    """Quarantined documents, oldest decision first: reason, language, the canonical document of a duplicate."""
    with handle_errors(as_json):
        entries = commands.quarantine_list(workspace, reason=reason, source=source, released=released)
    if as_json:
        return emit_json([e.to_dict() for e in entries])
    t = Table(title=f"quarantined documents ({len(entries)})")
    for col in ("source", "document", "reason", "language", "duplicates", "status"):
        t.add_column(col)
    for e in entries:
        t.add_row(e.source, e.document, e.reason or "", e.language, e.canonical_path or "", e.status)
    out.print(t)


@quarantine_app.command("show")
def quarantine_show(
    document: Annotated[str, typer.Argument(help="External id of the document (a folder source: its relative path).")],
    source: SourceOpt = None,
    as_json: JsonOpt = False,
    workspace: WsOpt = None,
) -> None:
    """Why one document is quarantined: every finding with the measured value and the limit, and its canonical document."""
    with handle_errors(as_json):
        e = commands.quarantine_show(workspace, document=document, source=source)
    if as_json:
        return emit_json(e.to_dict())
    out.print(f"{e.source}/{e.document}: {e.status} (language {e.language})", highlight=False)
    for f in e.findings:
        measured = "" if f.get("value") is None else f" [value {f['value']:g}, limit {f['limit']:g}]"
        out.print(f"  {f['reason']}: {f['detail']}{measured}", highlight=False)
    if e.canonical:
        out.print(f"  canonical document: {e.canonical_path}", highlight=False)


@quarantine_app.command("release")
def quarantine_release(
    document: Annotated[str, typer.Argument(help="External id of the quarantined document.")],
    source: SourceOpt = None,
    plan: PlanOpt = False,
    as_json: JsonOpt = False,
    workspace: WsOpt = None,
) -> None:
    """Embed a quarantined document anyway (a ledger row); it is not checked again until its content changes."""
    with handle_errors(as_json):
        result = commands.quarantine_release(workspace, document=document, source=source, plan=plan)
    if as_json:
        return emit_json({"plan": plan, **result.to_dict()})
    verb = "would release" if plan else "released"
    out.print(f"{verb} {result.entry.source}/{result.entry.document} (quarantined: {result.entry.reason});"
              f" {'it would be' if plan else 'it is'} chunked and embedded into every kept index", highlight=False)
