"""Allow `python -m pilothouse`."""

from pilothouse.cli import main

main()
