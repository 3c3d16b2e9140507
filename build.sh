#!/usr/bin/env bash
# Build dist/openhands-server: the `openhands-server` command as one standalone executable
# (PyInstaller, one file; Python and every dependency inside). See Development.md, "The
# standalone executable", for what it takes and how it is checked (`make check-binary`).
#
#   ./build.sh                        PyInstaller must already be in .venv
#   ./build.sh --install-pyinstaller  first install it (the `build` dependency group, pinned
#                                     in uv.lock, from the registry through uv)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

usage() { sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; }

install=0
for arg in "$@"; do
  case "$arg" in
    --install-pyinstaller) install=1 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "build.sh: unknown option $arg" >&2; usage >&2; exit 2 ;;
  esac
done

# scripts/uv finds uv as the Makefile does (on PATH, else .tools/, installed on first use).
uv=scripts/uv
if [ "$install" -eq 1 ]; then
  # --inexact: add the build group to .venv, keep the rest (dev tools included).
  "$uv" sync --frozen --inexact --group build
elif ! "$uv" run --frozen --no-sync python -c 'import PyInstaller' 2>/dev/null; then
  echo "build.sh: PyInstaller is not installed in .venv; run ./build.sh --install-pyinstaller" >&2
  exit 1
fi

# The hooks import litellm and the SDK: no banner, and no network fetch of litellm's model
# cost map (it retries for seconds where there is no network).
export OPENHANDS_SUPPRESS_BANNER=1 LITELLM_LOCAL_MODEL_COST_MAP=True

started=$SECONDS
# --no-sync: build from .venv as it is (uv run would otherwise sync the default groups).
"$uv" run --frozen --no-sync pyinstaller \
  --noconfirm --clean --onefile \
  --name openhands-server \
  --distpath dist \
  --workpath build/pyinstaller \
  --specpath build/pyinstaller \
  --additional-hooks-dir packaging/pyinstaller/hooks \
  --log-level WARN \
  packaging/pyinstaller/openhands_server.py
size=$(du -m dist/openhands-server | cut -f1)
echo "build.sh: built dist/openhands-server (${size} MB) in $((SECONDS - started)) s"
