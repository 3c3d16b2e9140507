"""openhands.tools: the tools the server offers, imported by name when the SDK loads."""

from PyInstaller.utils.hooks import collect_data_files, collect_submodules, copy_metadata

from trio_openhands.core.sdk_loader import TOOL_MODULES

hiddenimports = [name for module in TOOL_MODULES.values() for name in collect_submodules(module)]
datas = collect_data_files("openhands.tools") + copy_metadata("openhands-tools")
