# shellcheck shell=sh
# copy-cleanup.sh PATH...: after a copy that failed (a full disk), remove
# what it left of these store paths without registering them: each PATH
# that exists on disk but is not a valid store path. Valid paths are never
# touched. Prints "REMOVED PATH" for each one removed, and the free space.
set -u
for p in "$@"; do
  case $p in
    /nix/store/?*) ;;
    *) continue ;;
  esac
  [ -e "$p" ] || [ -L "$p" ] || continue
  if nix-store --check-validity "$p" >/dev/null 2>&1; then
    continue
  fi
  nix-store --delete "$p" >/dev/null 2>&1 || true
  if [ -e "$p" ] || [ -L "$p" ]; then
    rm -rf "$p" 2>/dev/null || true
  fi
  if [ ! -e "$p" ] && [ ! -L "$p" ]; then
    echo "REMOVED $p"
  fi
done
df -h /nix/store 2>/dev/null | tail -n 1 || true
