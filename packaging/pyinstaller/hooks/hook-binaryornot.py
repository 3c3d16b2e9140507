"""binaryornot (the file editor's binary-file check) reads CSV tables from its `data`
package at import, through importlib.resources."""

from PyInstaller.utils.hooks import collect_data_files

hiddenimports = ["binaryornot.data"]
datas = collect_data_files("binaryornot")
