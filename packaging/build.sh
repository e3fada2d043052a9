#!/usr/bin/env bash
# Build the one-folder desktop bundle with PyInstaller: dist/ept-studio/ept-studio.
#   bash packaging/build.sh           set up (packaging/dev.sh setup), install the `bundle` extra,
#                                     build, print the build time and the bundle's size
#   bash packaging/build.sh --smoke   the same, then run tests/packaging (the built binary, headless)
# Linux only here; packaging/ept-studio-windows.spec and ept-studio-macos.spec are built the same
# way on those systems (`pyinstaller --noconfirm packaging/ept-studio-<os>.spec`), untested.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

VENV=${EPT_STUDIO_VENV:-.venv}
log() { printf '[ept-studio build] %s\n' "$*" >&2; }

smoke=0
for arg in "$@"; do
    case "$arg" in
        --smoke) smoke=1 ;;
        *) log "unknown option $arg (use --smoke)"; exit 2 ;;
    esac
done

bash packaging/dev.sh setup
pins=$(mktemp)
"$VENV/bin/python" -c 'import torch, torchvision; v = lambda m: m.__version__.split("+")[0]; print(f"torch=={v(torch)}\ntorchvision=={v(torchvision)}")' >"$pins"
log "installing the bundle extra (PyInstaller; torch stays as it is)"
"$VENV/bin/python" -m pip --disable-pip-version-check -q install -c "$pins" -e ".[bundle]"
rm -f "$pins"

log "rendering the icons"
QT_QPA_PLATFORM=offscreen "$VENV/bin/python" packaging/make_icons.py >/dev/null

started=$(date +%s)
log "running PyInstaller (several minutes: torch, CUDA libraries, Qt, ONNX Runtime)"
"$VENV/bin/pyinstaller" --noconfirm --log-level WARN --distpath dist --workpath build \
    packaging/ept-studio.spec
seconds=$(( $(date +%s) - started ))
size=$(du -sh dist/ept-studio | cut -f1)
files=$(find dist/ept-studio -type f | wc -l)
log "built dist/ept-studio/ept-studio in ${seconds} s: ${size} in ${files} files"
printf '{"seconds": %s, "bytes": %s, "files": %s}\n' "$seconds" \
    "$(du -sb dist/ept-studio | cut -f1)" "$files" >dist/ept-studio.build.json

if [ "$smoke" -eq 1 ]; then
    log "smoke test of the built bundle"
    EPT_STUDIO_BUNDLE_TEST=1 OMP_WAIT_POLICY=PASSIVE QT_QPA_PLATFORM=offscreen \
        "$VENV/bin/python" -m pytest tests/packaging -q -p no:cacheprovider
fi
