# shellcheck shell=sh
# pantheros' boot watchdog: `boot-watchdog.sh STATE_DIR SECONDS`, started
# early at every boot by the pantheros-boot-watchdog unit.
#
# `pantheros deploy --reboot` writes STATE_DIR/trial before it reboots a
# host into a new system once (a one-shot boot entry; the old system stays
# the default). Its lines, key=value: toplevel (the trial system), boot (the
# boot id before the reboot), confirm (seconds to wait; SECONDS when
# absent), run (the deploy's run id).
#
# On the trial boot (a new boot id, running the trial system) the watchdog
# waits for the deployer's confirmation (STATE_DIR/trial-confirmed holding
# this boot's id); without it in time it reboots, and since the one-shot
# entry was spent, the old default boots. Every boot that finds a trial
# adds a line to STATE_DIR/trial-boots ("BOOT_ID trial|confirmed|expired|
# other SYSTEM"), which the deployer reads to say what happened.
set -u
state=$1 fallback=$2
trial=$state/trial
[ -f "$trial" ] || exit 0
toplevel='' before='' confirm=''
while IFS='=' read -r key value; do
  case $key in
  toplevel) toplevel=$value ;;
  boot) before=$value ;;
  confirm) confirm=$value ;;
  esac
done <"$trial"
case $confirm in '' | *[!0-9]*) confirm=$fallback ;; esac
boot=$(cat /proc/sys/kernel/random/boot_id)
booted=$(readlink -f /run/booted-system 2>/dev/null || true)
log() { echo "$boot $1 $booted" >>"$state/trial-boots"; }
# Not rebooted yet, or this boot was judged already (the unit started again
# by a later switch): nothing to do.
[ "$boot" = "$before" ] && exit 0
grep -q "^$boot " "$state/trial-boots" 2>/dev/null && exit 0
if [ "$booted" != "$toplevel" ]; then
  log other
  exit 0
fi
log trial
ticks=$((confirm * 10))
while [ "$ticks" -gt 0 ]; do
  if [ "$(cat "$state/trial-confirmed" 2>/dev/null)" = "$boot" ]; then
    log confirmed
    exit 0
  fi
  sleep 0.1
  ticks=$((ticks - 1))
done
log expired
echo "pantheros: the trial boot of $toplevel was not confirmed within ${confirm}s; rebooting into the default system"
systemctl reboot
