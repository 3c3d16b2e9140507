"""trio_openhands: what sdk_loader and the early app (web/early.py: the full app) import by
name (the analysis cannot see it), the package
whose files /docs serves (web/docs.py reads them, it imports nothing), and the package
version, which /server_info reads from the metadata."""

from PyInstaller.utils.hooks import copy_metadata

from trio_openhands.core.sdk_loader import TOOL_MODULES

hiddenimports = ["openhands.sdk", "swagger_ui", "trio_openhands.web.app", *TOOL_MODULES.values()]
datas = copy_metadata("trio-openhands")
