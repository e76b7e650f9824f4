# shellcheck shell=sh
# generations.sh PROFILE SIZES(yes|no) [RECORDS_DIR]: the profile's
# generations as GEN lines; with RECORDS_DIR, then each deploy record kept
# there after a "== record" line.
set -u
profile=$1 sizes=$2 records=${3:-}
if [ ! -e "$profile" ] && [ ! -L "$profile" ]; then
  echo "NO-PROFILE"
  exit "$EXIT_NO_PROFILE"
fi
list_generations "$profile" "$sizes"
if [ -n "$records" ]; then
  for f in "$records"/*.json; do
    if [ ! -f "$f" ] || [ "$f" = "$records/last.json" ]; then
      continue
    fi
    echo "== record"
    cat "$f"
    echo
  done
fi
