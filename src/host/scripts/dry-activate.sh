# shellcheck shell=sh
# dry-activate.sh TOPLEVEL WAIT [OLD]: the plan, asked of the target in one run.
# Checks that TOPLEVEL is a NixOS system, waits up to WAIT seconds for
# NixOS's activation lock (another activation holds it: LOCKED-BY-ACTIVATION
# and its holders, exit EXIT_ACTIVATION_LOCKED) and for systemd to settle
# (NixOS's program waits for that before doing anything: STARTING and the
# queued jobs, exit EXIT_SYSTEM_STARTING), then prints, each after a
# "== name" line:
#   dry-activate     what `switch-to-configuration dry-activate` printed,
#                    stdout and stderr in the order it wrote them (run with
#                    NIXOS_NO_CHECK=1: the pre-switch checks are judged from
#                    the inhibitors below, not by failing the plan)
#   dry-activate-rc  its exit status (100: the new init is incompatible)
#   inhibitors-running  /run/current-system's switch-inhibitors (JSON)
#   inhibitors-new      TOPLEVEL's switch-inhibitors (JSON)
#   boot             "LINK BOOTED NEW" for kernel, initrd and kernel-modules:
#                    what /run/booted-system and TOPLEVEL link to ("-": none)
#   old, new         the closures of OLD (the running system; "": none) and
#                    TOPLEVEL, "path<TAB>bytes" per store path (list_closure)
set -u
top=$1 wait=${2:-60} old=${3:-}
if [ ! -e "$top/nixos-version" ] || [ ! -x "$top/bin/switch-to-configuration" ]; then
  echo "NOT-A-SYSTEM $top"
  exit "$EXIT_NOT_A_SYSTEM"
fi
if ! activation_lock_free "$wait"; then
  echo "LOCKED-BY-ACTIVATION $ACTIVATION_LOCK"
  activation_lock_holders
  exit "$EXIT_ACTIVATION_LOCKED"
fi
if ! system_settled "$wait"; then
  echo "STARTING $(systemctl is-system-running 2>/dev/null)"
  queued_jobs
  exit "$EXIT_SYSTEM_STARTING"
fi
echo "== dry-activate"
NIXOS_NO_CHECK=1 "$top/bin/switch-to-configuration" dry-activate 2>&1
rc=$?
echo "== dry-activate-rc"
echo "$rc"
echo "== inhibitors-running"
cat /run/current-system/switch-inhibitors 2>/dev/null
echo
echo "== inhibitors-new"
cat "$top/switch-inhibitors" 2>/dev/null
echo
echo "== boot"
for link in kernel initrd kernel-modules; do
  booted=$(readlink -f "/run/booted-system/$link" 2>/dev/null) || booted=
  new=$(readlink -f "$top/$link" 2>/dev/null) || new=
  [ -e "/run/booted-system/$link" ] || booted=-
  [ -e "$top/$link" ] || new=-
  echo "$link $booted $new"
done
list_closure old "$old"
list_closure new "$top"
