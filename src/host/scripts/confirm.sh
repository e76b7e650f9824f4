# shellcheck shell=sh
# confirm.sh DIR [SECONDS PROFILE [HEALTH ARGS...]]: the reachability proof.
# It runs over a new SSH connection, and the watchdog keeps the new system
# only when this file appears. With SECONDS, then, in the same command:
# wait (on the host, up to SECONDS) for the watchdog to take it and report
# the status it ends in (report_status); once confirmed, the profile's
# current generation and system ("== generation", "N SYSTEM"), and, with
# health arguments (those of health.sh), the first round of health checks
# ("== health", what it printed, "== health-rc", its status).
set -eu
touch "$1/confirm"
[ $# -ge 3 ] || exit 0
dir=$1 wait=$2 profile=$3
shift 3
st=$(await_status "$dir" "$ST_CONFIRMED" "$wait")
printf '%s\n' "$st"
case "$st" in "$ST_CONFIRMED"*) ;; *) exit 0 ;; esac
set +e
echo "== generation"
echo "$(current_generation "$profile") $(readlink -f "$profile" 2>/dev/null)"
if [ $# -gt 0 ]; then
  echo "== health"
  health_round "$@"
  rc=$?
  echo "== health-rc"
  echo "$rc"
fi
exit 0
