# shellcheck shell=sh
# break-lock.sh STATE_DIR FORCE(yes|no): remove the deploy lock another run
# left, unless that run's activation is still in progress on this host (its
# watchdog has not finished): then only FORCE removes it.
set -u
state=$1 force=$2
if [ ! -d "$state/lock" ]; then
  echo "NO-LOCK"
  exit 0
fi
owner=$(cat "$state/lock/owner" 2>/dev/null || echo 'unknown holder')
run=${owner%% *}
st=$(cat "$state/$run/status" 2>/dev/null || true)
case "$st" in
"$ST_ACTIVATING"* | "$ST_AWAITING_CONFIRM"* | "$ST_ROLLING_BACK"*)
  if [ "$force" != yes ]; then
    echo "LIVE $owner (its activation is at: $st)"
    exit "$EXIT_LOCK_LIVE"
  fi
  ;;
esac
rm -rf "$state/lock"
echo "BROKEN $owner"
