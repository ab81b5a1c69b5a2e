"""``python -m embedops.cli``."""

from embedops.cli import main

main()
