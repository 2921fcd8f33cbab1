"""``python -m dfkit ...`` (what ``torchrun -m dfkit train ...`` starts in every process)."""

from dfkit.cli import main

main()
