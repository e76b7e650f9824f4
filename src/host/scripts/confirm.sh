# shellcheck shell=sh
# confirm.sh DIR [SECONDS]: the reachability proof. It runs over a new SSH
# connection, and the watchdog keeps the new system only when this file
# appears. With SECONDS, then wait (on the host, up to SECONDS) for the
# watchdog to take it, and report the status it ends in.
set -eu
touch "$1/confirm"
if [ $# -ge 2 ]; then
  await_status "$1" "$ST_CONFIRMED" "$2"
fi
