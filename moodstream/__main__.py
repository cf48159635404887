"""`python -m moodstream ...` is the `moodstream` command."""

from moodstream.cli import main

if __name__ == "__main__":
    main()
