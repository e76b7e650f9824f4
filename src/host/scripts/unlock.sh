# shellcheck shell=sh
# unlock.sh STATE_DIR RUN_ID [record]: release the deploy lock if this run
# holds it; another run's lock is left alone (and named). With "record",
# this run's deploy record (on stdin) is written first, while the lock is
# still held: one round trip for both ("RECORD-FAILED" when it could not).
set -u
state=$1 run=$2 with_record=${3:-}
[ -d "$state/lock" ] || exit 0
holder=$(cut -d' ' -f1 "$state/lock/owner" 2>/dev/null || true)
if [ "$holder" = "$run" ]; then
  if [ "$with_record" = record ]; then
    write_record "$state" "$run" || echo "RECORD-FAILED"
  fi
  rm -rf "$state/lock"
else
  echo "NOT-OURS $(cat "$state/lock/owner" 2>/dev/null || echo 'unknown holder')"
fi
