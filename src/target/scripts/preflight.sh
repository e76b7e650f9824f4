# shellcheck shell=sh
# preflight.sh STATE_DIR PROFILE TOPLEVEL OWNER: take the host's deploy lock
# (a directory: mkdir is atomic), check that TOPLEVEL (if given) is a NixOS
# system, then report the generations, the running system and whether
# systemd runs the host, each section after a "== name" line.
set -u
state=$1 profile=$2 top=$3 owner=$4
mkdir -p "$state"
if ! mkdir "$state/lock" 2>/dev/null; then
  echo "LOCKED $(cat "$state/lock/owner" 2>/dev/null || echo 'unknown holder')"
  exit "$EXIT_LOCKED"
fi
echo "$owner since $(date -Is)" >"$state/lock/owner"
if [ -n "$top" ]; then
  if [ ! -e "$top/nixos-version" ] || [ ! -x "$top/bin/switch-to-configuration" ]; then
    rm -rf "$state/lock"
    echo "NOT-A-SYSTEM $top"
    exit "$EXIT_NOT_A_SYSTEM"
  fi
fi
echo "== generations"
list_generations "$profile" no
echo "== system"
readlink -f "$profile" 2>/dev/null || true
echo "== systemd"
if [ -d /run/systemd/system ] && command -v systemd-run >/dev/null 2>&1; then echo yes; else echo no; fi
