# shellcheck shell=sh
# break-lock.sh STATE_DIR FORCE(yes|no): remove the deploy lock another run
# left, unless that run's activation is still in progress on this host (its
# watchdog still runs): then only FORCE removes it. A watchdog that a reboot
# or a kill ended does not keep the lock alive.
set -u
state=$1 force=$2
if [ ! -d "$state/lock" ]; then
  echo "NO-LOCK"
  exit 0
fi
owner=$(cat "$state/lock/owner" 2>/dev/null || echo 'unknown holder')
run=${owner%% *}
st=$(cat "$state/runs/$run/status" 2>/dev/null || true)
case "$st" in
"$ST_ACTIVATING"* | "$ST_AWAITING_CONFIRM"* | "$ST_ROLLING_BACK"*)
  case "$(watchdog_state "$state/runs/$run")" in
  running | unstarted) live=yes ;;
  *) live=no ;;
  esac
  if [ "$force" != yes ] && [ "$live" = yes ]; then
    echo "LIVE $owner (its activation is at: $st)"
    exit "$EXIT_LOCK_LIVE"
  fi
  ;;
esac
rm -rf "$state/lock"
echo "BROKEN $owner"
