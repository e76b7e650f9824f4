# shellcheck shell=sh
# key-write.sh DIR FILE USER GROUP MODE: write one key, whose value is the
# rest of stdin (after this script's own text), to DIR/FILE. The value never
# sits in an argument or the environment. The file appears whole or not at
# all: a temporary file in DIR gets its owner, group and final mode before
# its first byte, then is renamed over DIR/FILE. DIR, when this creates it,
# is root's and not listable by others (0711). Prints "KEY FILE BYTES". On a
# host run by systemd, pantheros-key-FILE.service is restarted when it runs,
# so units that are PartOf it follow the new value.
set -eu
dir=$1 file=$2 user=$3 group=$4 mode=$5
umask 077
if [ ! -d "$dir" ]; then
  mkdir -p "$dir"
  chown root:root "$dir"
  chmod 0711 "$dir"
fi
tmp=$(mktemp "$dir/.$file.XXXXXX")
trap 'rm -f "$tmp"' EXIT
chown "$user:$group" "$tmp"
chmod "$mode" "$tmp"
cat >"$tmp"
mv -f "$tmp" "$dir/$file"
trap - EXIT
echo "KEY $file $(wc -c <"$dir/$file")"
if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
  systemctl try-restart "pantheros-key-$file.service" >/dev/null 2>&1 || true
fi
