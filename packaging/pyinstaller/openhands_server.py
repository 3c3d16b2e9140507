"""The entry point PyInstaller freezes into `dist/openhands-server` (see build.sh)."""

from trio_openhands.cli import main

if __name__ == "__main__":
    main()
