# shellcheck shell=sh
# unlock.sh STATE_DIR RUN_ID: release the deploy lock if this run holds it;
# another run's lock is left alone (and named).
set -u
state=$1 run=$2
[ -d "$state/lock" ] || exit 0
holder=$(cut -d' ' -f1 "$state/lock/owner" 2>/dev/null || true)
if [ "$holder" = "$run" ]; then
  rm -rf "$state/lock"
else
  echo "NOT-OURS $(cat "$state/lock/owner" 2>/dev/null || echo 'unknown holder')"
fi
