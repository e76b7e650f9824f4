# shellcheck shell=sh
# record.sh DIR RUN_ID: the deploy record (JSON, on stdin after this
# script) goes to DIR/records/RUN_ID.json and DIR/records/last.json, each
# written to a temporary file first and renamed, so a reader sees the old
# record or the new one, never a part. The newest 50 records are kept.
set -eu
dir=$1/records
run=$2
umask 022
mkdir -p "$dir"
tmp=$(mktemp "$dir/.new.XXXXXX")
cat >"$tmp"
chmod 0644 "$tmp"
cp "$tmp" "$dir/.last.$$"
mv -f "$tmp" "$dir/$run.json"
mv -f "$dir/.last.$$" "$dir/last.json"
# Prune: the records oldest first by name (run ids start with the time).
for f in "$dir"/*.json; do
  [ "$f" = "$dir/last.json" ] || printf '%s\n' "$f"
done | sort | head -n -50 | while read -r old; do
  rm -f "$old"
done
