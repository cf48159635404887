"""`python -m moodstream ...` is the `moodstream` command."""

from moodstream.cli import main

main()
