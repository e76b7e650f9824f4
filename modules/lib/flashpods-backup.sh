#!/bin/sh
# Back up the Flashpods SQLite database and keep the newest KEEP copies:
#   flashpods-backup.sh DATABASE DIRECTORY KEEP
# Uses SQLite's online backup (consistent while the API writes), into a
# temporary name first so a copy is either complete or absent.
set -eu
db=$1
dir=$2
keep=$3
umask 077
if [ ! -e "$db" ]; then
  echo "no database yet at $db"
  exit 0
fi
mkdir -p "$dir"
out="$dir/flashpods-$(date +%Y%m%d-%H%M%S)-$$.db"
sqlite3 "$db" ".backup '$out.tmp'"
mv "$out.tmp" "$out"
echo "backed up $db to $out"
# shellcheck disable=SC2012 # the names are our own flashpods-<timestamp>.db
ls -1t "$dir"/flashpods-*.db | tail -n +$((keep + 1)) | while read -r old; do
  rm -f -- "$old"
  echo "removed $old"
done
