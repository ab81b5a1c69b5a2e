"""The published OpenAPI schema (docs/openapi.json) of a server with the default limits.

    python -m embedops.server.openapi docs/openapi.json     # regenerate; tests/test_server.py checks it is current
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def schema() -> dict[str, Any]:
    """The schema of ``create_app()`` with the default ServerConfig (reads open, default limits)."""
    from embedops.server.app import create_app

    return create_app().openapi()


def render() -> str:
    return json.dumps(schema(), indent=2, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    target = Path(args[0]) if args else Path("docs/openapi.json")
    target.write_text(render(), encoding="utf-8")
    print(f"wrote {target}")


if __name__ == "__main__":
    main()
