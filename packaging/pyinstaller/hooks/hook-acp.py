"""acp (the Agent Client Protocol, imported by the SDK): its pydantic models read their field
docs from the source (`use_attribute_docstrings`). From the PYZ archive there is no source, and
pydantic's fallback walks every loaded module for every model: the SDK import took 17.5 s
instead of 6.5 s. Collected as plain .py files, the source is there."""

module_collection_mode = "py"
