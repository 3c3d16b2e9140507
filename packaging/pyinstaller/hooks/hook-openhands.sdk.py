"""openhands.sdk: all of it (event kinds are found by subclass, so every module must be
importable), its prompt templates and JSON schemas, and its version (read at import)."""

from PyInstaller.utils.hooks import collect_data_files, collect_submodules, copy_metadata

hiddenimports = collect_submodules("openhands.sdk")
datas = collect_data_files("openhands.sdk") + copy_metadata("openhands-sdk")
