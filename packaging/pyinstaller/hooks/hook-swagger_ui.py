"""swagger_ui (swagger-ui-py): the /docs page's script and style, which web/docs.py reads
through importlib.resources; only those two of its static files, not its editor bundles."""

from PyInstaller.utils.hooks import collect_data_files

datas = collect_data_files(
    "swagger_ui", includes=["static/swagger-ui-bundle.js", "static/swagger-ui.css"]
)
