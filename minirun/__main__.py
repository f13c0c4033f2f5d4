"""``python -m minirun`` is the ``minirun`` command."""

from minirun.cli import main

main()
