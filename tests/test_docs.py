"""Docs match the code: every command, option and setting is documented."""

from __future__ import annotations

from pathlib import Path

from typing import Any

import typer.main

from embedops.cli import app
from embedops.config import EmbedopsTable
from embedops.curate import RULE_NAMES, CurateSettings

DOCS = Path(__file__).parents[1] / "docs"


def walk(group: Any, prefix: str = "embedops") -> list[tuple[str, Any]]:
    """(command path, command) for every leaf command; typer vendors click, so duck-type groups."""
    out = []
    for name, cmd in getattr(group, "commands", {}).items():
        path = f"{prefix} {name}"
        out.extend(walk(cmd, path) if hasattr(cmd, "commands") else [(path, cmd)])
    return out


def test_every_command_and_option_is_in_the_cli_reference() -> None:
    reference = (DOCS / "cli.md").read_text()
    commands = walk(typer.main.get_command(app))
    assert len(commands) >= 15
    for path, cmd in commands:
        assert f"`{path}" in reference, f"{path} is not documented in docs/cli.md"
        for param in cmd.params:
            for opt in getattr(param, "opts", []):
                if opt.startswith("--") and opt not in ("--help",):
                    assert opt in reference, f"{path} {opt} is not documented in docs/cli.md"


def test_every_setting_is_in_the_configuration_docs() -> None:
    reference = (DOCS / "configuration.md").read_text()
    for name in [*EmbedopsTable.model_fields, "monitor", "budget"]:  # every key [embedops] accepts, [monitor], [budget]
        assert f"`{name}`" in reference, f"setting {name} is not documented"
    from embedops.config import BudgetSettings

    for key in BudgetSettings.__dataclass_fields__:
        assert f"| `{key}` |" in reference, f"[budget] {key} is not in the table of docs/configuration.md"


def test_every_curate_setting_and_reason_is_in_the_curation_docs() -> None:
    reference = (DOCS / "curation.md").read_text()
    for name in CurateSettings.__dataclass_fields__:
        assert f"| `{name}` |" in reference, f"[curate] {name} is not in the settings table of docs/curation.md"
    for reason in RULE_NAMES:
        assert f"| `{reason}` |" in reference, f"reason {reason} is not in docs/curation.md"


def test_every_embedder_section_key_is_in_the_providers_docs() -> None:
    import dataclasses

    from embedops.embedding.providers import OpenAIConfig

    reference = (DOCS / "providers.md").read_text()
    for f in dataclasses.fields(OpenAIConfig):
        if f.name not in ("name", "base_dir"):
            assert f"| `{f.name}` |" in reference, f"[embedders.NAME] {f.name} is not documented in docs/providers.md"
    assert "providers.md" in (DOCS.parent / "README.md").read_text()


def test_the_default_price_table_in_the_providers_docs_is_the_shipped_one_with_its_date() -> None:
    import re

    from embedops.embedding.spend import LIST_PRICES, LIST_PRICES_CHECKED

    reference = (DOCS / "providers.md").read_text()
    documented = {(host, model): float(price) for host, model, price in
                  re.findall(r"^\| `([a-z0-9.-]+)` \| `([^`]+)` \| ([0-9.]+) \|$", reference, re.M)}
    assert documented == LIST_PRICES, "docs/providers.md#default-prices differs from spend.LIST_PRICES"
    assert f"USD per million tokens ({LIST_PRICES_CHECKED})" in reference
    assert f"checked {LIST_PRICES_CHECKED}" in reference


def test_readme_starts_with_the_two_commands() -> None:
    readme = (DOCS.parent / "README.md").read_text()
    first_block = readme.split("```")[1]
    assert "make demo" in first_block and "make test" in first_block
    assert "make test" in (DOCS.parent / ".ci/run").read_text()
