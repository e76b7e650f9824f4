# shellcheck shell=sh
# health.sh SYSTEMD(yes|no) TIMEOUT [--baseline UNIT...] [--services UNIT...] [--http URL...] [--commands CMD...]:
# one round of health checks, each bounded by TIMEOUT seconds (and killed
# when it overruns); prints each problem, exits 1 when there is one. Units
# in --baseline had failed before the deploy: they are reported, not blamed.
# Not `set -e`: every check runs, and each failure is reported.
set -u
systemd=$1 t=$2
shift 2
section=
fail=0
baseline=" "
for a in "$@"; do
  case "$a" in
  --baseline | --services | --http | --commands)
    section=$a
    continue
    ;;
  esac
  case "$section" in
  --baseline)
    baseline="$baseline$a "
    ;;
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
    if ! code=$(curl -sS -o /dev/null -m "$t" -w '%{http_code}' "$a" 2>&1) || [ "${code#2}" = "$code" ]; then
      echo "http $a answered $code"
      fail=1
    fi
    ;;
  --commands)
    out=$(timeout -k 2 "$t" sh -c "$a" 2>&1)
    rc=$?
    if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
      echo "command timed out after ${t}s: $a"
      fail=1
    elif [ "$rc" -ne 0 ]; then
      echo "command failed: $a: $(printf '%s' "$out" | tail -n 3)"
      fail=1
    fi
    ;;
  esac
done
if [ "$systemd" = yes ]; then
  state=$(timeout -k 2 "$t" systemctl is-system-running --wait 2>/dev/null)
  [ -n "$state" ] || state=unknown
  if [ "$state" != running ]; then
    new=
    old=
    for u in $(systemctl --failed --no-legend --plain 2>/dev/null | awk '{ print $1 }'); do
      case "$baseline" in
      *" $u "*) old="$old $u" ;;
      *) new="$new $u" ;;
      esac
    done
    if [ "$state" = degraded ] && [ -z "$new" ] && [ -n "$old" ]; then
      echo "note: units that had failed before this deploy are still failed:$old"
    else
      echo "system is $state"
      for u in $new; do echo "  failed unit: $u"; done
      fail=1
    fi
  fi
fi
exit $fail
