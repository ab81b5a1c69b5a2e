"""The ``embedops`` command: parse → commands.X → render. Nothing else lives here.

One module per command group; each registers its commands on the shared ``app``.
"""


from embedops.cli import capacity, core, curate, evaluate, migrate, monitor, thresholds  # noqa: F401  (registers the commands)
from embedops.cli.common import app


def main() -> None:
    app()


__all__ = ["app", "main"]
