# shellcheck shell=sh
# dry-activate.sh TOPLEVEL: check that TOPLEVEL is a NixOS system, then show
# what activating it would do (switch-to-configuration dry-activate).
set -u
top=$1
if [ ! -e "$top/nixos-version" ] || [ ! -x "$top/bin/switch-to-configuration" ]; then
  echo "NOT-A-SYSTEM $top"
  exit "$EXIT_NOT_A_SYSTEM"
fi
exec "$top/bin/switch-to-configuration" dry-activate
