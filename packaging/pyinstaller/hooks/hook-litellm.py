"""litellm: provider modules imported lazily by name, JSON data read at run time."""

from PyInstaller.utils.hooks import collect_data_files, collect_submodules, copy_metadata

# Every provider module (litellm imports them lazily, by name), but not the proxy server's
# (FastAPI, Prisma, ...): the few proxy modules the client does import are imported
# statically, so the analysis finds them anyway.
hiddenimports = collect_submodules(
    "litellm", filter=lambda name: not name.startswith("litellm.proxy")
)
# tiktoken finds its encodings as plugins of the `tiktoken_ext` namespace package; litellm
# points it at the encodings it ships (litellm_core_utils/tokenizers), so none is downloaded.
hiddenimports += ["tiktoken_ext.openai_public"]
# The model cost map (read offline: LITELLM_LOCAL_MODEL_COST_MAP), tokenizers, templates; not
# the proxy's web UI and OpenAPI snapshot (about 40 MB).
datas = collect_data_files("litellm", excludes=["proxy/_experimental/out", "proxy/swagger"])
datas += copy_metadata("litellm")
# The optional Rust extension (43 MB): litellm falls back to Python when it cannot import
# it, and the chat-completions path the SDK takes does not load it.
excludedimports = ["litellm.rust_bridge._native"]
