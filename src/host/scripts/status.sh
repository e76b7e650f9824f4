# shellcheck shell=sh
# status.sh DIR: the activation's status line ("" before the first one).
# When that status is not final and the watchdog no longer runs, a second
# line says so: "ended rebooted|stopped RUNNING_SYSTEM" (nothing will change
# the status any more; RUNNING_SYSTEM is what the host runs now).
set -u
final() {
  case "$1" in
  "$ST_CONFIRMED"* | "$ST_DONE"* | "$ST_FAILED"* | "$ST_ROLLED_BACK"* | "$ST_ROLLBACK_FAILED"* | "$ST_REBOOT_REQUIRED"*) return 0 ;;
  *) return 1 ;;
  esac
}
st=$(cat "$1/status" 2>/dev/null || true)
if final "$st"; then
  printf '%s\n' "$st"
  exit 0
fi
ws=$(watchdog_state "$1")
case "$ws" in
rebooted | stopped)
  # The watchdog may have written its last status just before it ended.
  st=$(cat "$1/status" 2>/dev/null || true)
  printf '%s\n' "$st"
  final "$st" || echo "ended $ws $(readlink -f /run/current-system 2>/dev/null || true)"
  ;;
*) printf '%s\n' "$st" ;;
esac
