#!/usr/bin/env bash
# Install a built bundle for the current user: the program folder, a link on PATH, the desktop
# entry and the hicolor icons (no root needed).
#   bash packaging/linux/install.sh [BUNDLE]     BUNDLE: dist/ept-studio (the default)
# Uninstall: rm -rf ~/.local/opt/ept-studio ~/.local/bin/ept-studio \
#   ~/.local/share/applications/ept-studio.desktop ~/.local/share/icons/hicolor/*/apps/ept-studio.png
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$here/../.."
bundle=${1:-$root/dist/ept-studio}
[ -x "$bundle/ept-studio" ] || { echo "no bundle at $bundle (run bash packaging/build.sh)" >&2; exit 1; }
prefix=${XDG_DATA_HOME:-$HOME/.local/share}
opt="$HOME/.local/opt/ept-studio"
mkdir -p "$HOME/.local/opt" "$HOME/.local/bin" "$prefix/applications"
rm -rf "$opt"
cp -a "$bundle" "$opt"
ln -sf "$opt/ept-studio" "$HOME/.local/bin/ept-studio"
sed "s|^Exec=ept-studio|Exec=$opt/ept-studio|; s|^TryExec=ept-studio|TryExec=$opt/ept-studio|" \
    "$here/ept-studio.desktop" >"$prefix/applications/ept-studio.desktop"
for size in 16 24 32 48 64 128 256 512; do
    mkdir -p "$prefix/icons/hicolor/${size}x${size}/apps"
    icons="$bundle/_internal/resources/icons"; [ -d "$icons" ] || icons="$root/resources/icons"
    cp "$icons/ept-studio-$size.png" "$prefix/icons/hicolor/${size}x${size}/apps/ept-studio.png"
done
command -v update-desktop-database >/dev/null && update-desktop-database "$prefix/applications" || true
echo "installed: $opt (run: ept-studio, or EPT Studio in the applications menu)"
