# shellcheck shell=sh
# status.sh DIR [UNTIL SECONDS]: the activation's status (report_status in
# common.sh). With UNTIL, first wait on the host, up to SECONDS, until the
# status starts with UNTIL or is final, or the watchdog has ended.
set -u
if [ $# -ge 3 ]; then
  await_status "$1" "$2" "$3"
else
  report_status "$1"
fi
