"""`embedops thresholds ...`: similarity cut-offs bound to a space, recalibrated across models."""


from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.table import Table

from embedops import commands
from embedops.cli.common import (
    JsonOpt,
    PlanOpt,
    WsOpt,
    app,
    emit_json,
    err,
    handle_errors,
    out,
    styled,
    when,
)

thresholds_app = typer.Typer(no_args_is_help=True, help="Similarity thresholds bound to a space, recalibrated across models.")
app.add_typer(thresholds_app, name="thresholds")

# A negative value ("-0.2") reads as an unknown short option unless unknown options pass through as
# arguments; a misspelt option then fails as an unexpected extra argument, still exit 2.
VALUE_ARGS = {"ignore_unknown_options": True}
ThresholdAliasOpt = Annotated[Optional[str], typer.Option(help="Alias whose space the threshold is read for (default: prod).")]


def _print_problems(problems: list[str]) -> None:
    for p in problems[:20]:
        err.print(styled("labels line skipped", "yellow", f" {p}"), highlight=False)
    if len(problems) > 20:
        err.print(styled(f"... and {len(problems) - 20} more", "yellow", " (see --json)"))


@thresholds_app.command("add", context_settings=VALUE_ARGS)
def thresholds_add(
    name: Annotated[str, typer.Argument(help="Threshold name, e.g. dedup.")],
    value: Annotated[float, typer.Argument(help="Value in the space the alias serves, a cosine in [-1, 1], e.g. 0.95.")],
    description: Annotated[str, typer.Option(help="What the rule using it does.")] = "",
    labels: Annotated[Optional[Path], typer.Option(help="Labelled pairs (text_a, text_b, label) as .tsv, .csv or .jsonl.")] = None,
    alias: ThresholdAliasOpt = None, plan: PlanOpt = False, as_json: JsonOpt = False, workspace: WsOpt = None,
) -> None:
    """Register a threshold, bound to the space the alias serves."""
    with handle_errors(as_json):
        result = commands.thresholds_add(workspace, name=name, value=value, description=description, labels=labels,
                                         alias=alias, plan=plan)
    if as_json:
        return emit_json(result.to_dict())
    _print_problems(result.problems)
    v = result.value
    out.print(f"{'would add' if plan else 'added'} threshold {v.name} = {v.value:g} in space {v.space_key}"
              + (f" ({result.labelled_pairs} labelled pairs)" if result.labelled_pairs else ""), highlight=False)


@thresholds_app.command("labels")
def thresholds_labels(
    name: Annotated[str, typer.Argument(help="Threshold name.")],
    path: Annotated[Path, typer.Argument(help="Labelled pairs (text_a, text_b, label) as .tsv, .csv or .jsonl.")],
    plan: PlanOpt = False, as_json: JsonOpt = False, workspace: WsOpt = None,
) -> None:
    """Attach (or replace) the labelled pairs that label matching uses."""
    with handle_errors(as_json):
        data = commands.thresholds_labels(workspace, name=name, path=path, plan=plan)
    if as_json:
        return emit_json(data)
    _print_problems(data["problems"])
    out.print(f"{'would attach' if plan else 'attached'} {data['pairs']} labelled pairs ({data['positives']} positive)"
              f" to {name}", highlight=False)


@thresholds_app.command("list")
def thresholds_list(
    all_values: Annotated[bool, typer.Option("--all", help="Every recorded value (the history), not only the current ones.")] = False,
    alias: ThresholdAliasOpt = None, as_json: JsonOpt = False, workspace: WsOpt = None,
) -> None:
    """Thresholds: current value per space (* the space the alias serves), method, when."""
    with handle_errors(as_json):
        rows = commands.thresholds_list(workspace, alias=alias, all_values=all_values)
    if as_json:
        return emit_json(rows)
    t = Table(title="threshold values" if all_values else "thresholds")
    for col in ("name", "space", "value", "method", "when", "reason" if all_values else "description"):
        t.add_column(col)
    if all_values:
        for v in rows:
            t.add_row(v["name"], v["space"], f"{v['value']:g}", v["method"], when(v["created_at"]), v["reason"] or "")
    for info in [] if all_values else rows:
        for v in info["values"] or [None]:
            if v is None:
                t.add_row(info["name"], "", "", "", "", info["description"])
                continue
            mark = " *" if v["space"] == info["serving_space"] else ""
            t.add_row(info["name"], v["space"] + mark, f"{v['value']:g}", v["method"], when(v["created_at"]),
                      info["description"])
    out.print(t)


@thresholds_app.command("get")
def thresholds_get(
    name: Annotated[str, typer.Argument(help="Threshold name.")],
    space: Annotated[Optional[str], typer.Option(help="Space key, index id or embedder name (default: the alias's space).")] = None,
    alias: ThresholdAliasOpt = None, as_json: JsonOpt = False, workspace: WsOpt = None,
) -> None:
    """The value applications read: for the space the alias serves now."""
    with handle_errors(as_json):
        result = commands.thresholds_get(workspace, name=name, space=space, alias=alias)
    if as_json:
        return emit_json(result.to_dict())
    out.print(f"{result.value.value:g}", highlight=False)


@thresholds_app.command("set", context_settings=VALUE_ARGS)
def thresholds_set(
    name: Annotated[str, typer.Argument(help="Threshold name.")],
    value: Annotated[float, typer.Argument(help="The value for that space, a cosine in [-1, 1].")],
    space: Annotated[str, typer.Option(help="Space key, index id or embedder name the value is valid in.")],
    reason: Annotated[Optional[str], typer.Option(help="Why; stored with the value and in the ledger.")] = None,
    plan: PlanOpt = False, as_json: JsonOpt = False, workspace: WsOpt = None,
) -> None:
    """Record a value chosen by hand for a space (history is kept)."""
    with handle_errors(as_json):
        result = commands.thresholds_set(workspace, name=name, value=value, space=space, reason=reason, plan=plan)
    if as_json:
        return emit_json(result.to_dict())
    v = result.value
    out.print(f"{'would set' if plan else 'set'} {v.name} = {v.value:g} in space {v.space_key}", highlight=False)


@thresholds_app.command("calibrate")
def thresholds_calibrate(
    to: Annotated[str, typer.Option(help="New space: space key, index id, or embedder name (its shadow index).")],
    name: Annotated[Optional[list[str]], typer.Option(help="Only this threshold (repeatable; default: all bound ones).")] = None,
    method: Annotated[str, typer.Option(help="distribution | labels | both")] = "both",
    objective: Annotated[str, typer.Option(help="Label matching keeps this: precision or f1.")] = "precision",
    use: Annotated[Optional[str], typer.Option(help="Proposal --apply records: distribution or labels (default: labels when computed).")] = None,
    pairs: Annotated[int, typer.Option(help="Random pairs sampled for distribution matching (a tenth as many anchors for near neighbours).")] = 2000,
    apply: Annotated[bool, typer.Option("--apply", help="Record the proposals for the new space (ledger: method and evidence).")] = False,
    alias: ThresholdAliasOpt = None, plan: PlanOpt = False, as_json: JsonOpt = False, workspace: WsOpt = None,
) -> None:
    """Propose values for another space, with evidence and the behaviour change; changes nothing without --apply."""
    with handle_errors(as_json):
        result = commands.thresholds_calibrate(workspace, to=to, name=name, method=method, objective=objective, use=use,
                                               pairs=pairs, apply=apply, alias=alias, plan=plan)
    data = result.to_dict()
    if as_json:
        return emit_json(data)
    s = data["sample"]
    out.print(f"{data['from']['space']} → {data['to']['space']}: {s['pairs']} pairs ({s['neighbour_pairs']} near"
              f" neighbours, {s['random_pairs']} random)", highlight=False)
    for p in data["proposals"]:
        _render_proposal(p)
    if data["applied"]:
        for v in data["applied"]:
            out.print(f"applied {v['name']} = {v['value']:g} ({v['method']}) in {v['space']}", highlight=False)
    elif data["proposals"]:
        out.print("nothing changed" + ("" if apply else "; record the proposals with --apply"))
    else:
        out.print(f"no threshold is bound to the space alias {data['alias']} serves")


def _render_proposal(p: dict[str, Any]) -> None:
    t = Table(title=f"{p['name']}: {p['old_value']:g} in the old space; recommended {p['recommended'] or 'none'}")
    for col in ("candidate", "value", "95% interval", "pairs above (old → new)", "precision", "recall", "now above", "now below"):
        t.add_column(col)
    for label, r in p["report"].items():
        match = p.get(label) if label in ("distribution", "labels") else None
        iv = match["interval"] if match and match.get("interval") else None
        corpus, lab = r["corpus"], r["labels"]
        effect = corpus or lab
        above = f"{effect['before']['fraction_above']:.2%} → {effect['after']['fraction_above']:.2%}" if effect else ""
        prec = f"{lab['before']['precision']:.3f} → {lab['after']['precision']:.3f}" if lab else "no labels"
        rec = f"{lab['before']['recall']:.3f} → {lab['after']['recall']:.3f}" if lab else ""
        t.add_row(label, f"{r['value']:.4f}", f"[{iv['low']:.4f}, {iv['high']:.4f}]" if iv else "", above, prec, rec,
                  str(effect["now_above"]) if effect else "", str(effect["now_below"]) if effect else "")
    out.print(t)
    chosen = p["report"].get(p["recommended"] or "", {})
    effect = chosen.get("corpus") or chosen.get("labels") if chosen else None
    for key, word in (("examples_now_above", "now above"), ("examples_now_below", "now below")):
        for f in (effect or {}).get(key, [])[:2]:
            out.print(f"  {word}: {f['old_score']:.3f} → {f['new_score']:.3f}  {f['text_a'][:70]!r} | {f['text_b'][:70]!r}",
                      highlight=False, markup=False)
    for note in p["notes"]:
        err.print(styled("note", "yellow", f" {note}"), highlight=False)
