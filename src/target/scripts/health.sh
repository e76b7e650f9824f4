# shellcheck shell=sh
# health.sh SYSTEMD(yes|no) [--services UNIT...] [--http URL...] [--commands CMD...]:
# one round of health checks; prints each problem, exits 1 when there is one.
# Not `set -e`: every check runs, and each failure is reported.
set -u
systemd=$1
shift
section=
fail=0
if [ "$systemd" = yes ]; then
  state=$(timeout 30 systemctl is-system-running --wait 2>/dev/null)
  [ -n "$state" ] || state=unknown
  if [ "$state" != running ]; then
    echo "system is $state"
    systemctl --failed --no-legend --plain 2>/dev/null | awk '{ print "  failed unit: " $1 }'
    fail=1
  fi
fi
for a in "$@"; do
  case "$a" in
  --services | --http | --commands)
    section=$a
    continue
    ;;
  esac
  case "$section" in
  --services)
    if ! systemctl is-active --quiet "$a"; then
      echo "service $a is $(systemctl is-active "$a" 2>/dev/null)"
      fail=1
    fi
    ;;
  --http)
    if ! command -v curl >/dev/null 2>&1; then
      echo "http check $a: curl is not installed on the host"
      fail=1
      continue
    fi
    if ! code=$(curl -sS -o /dev/null -m 5 -w '%{http_code}' "$a" 2>&1) || [ "${code#2}" = "$code" ]; then
      echo "http $a answered $code"
      fail=1
    fi
    ;;
  --commands)
    if ! out=$(sh -c "$a" 2>&1); then
      echo "command failed: $a: $(printf '%s' "$out" | tail -n 3)"
      fail=1
    fi
    ;;
  esac
done
exit $fail
