"""``python -m medgen`` runs the CLI."""

from medgen.cli import main

main()
