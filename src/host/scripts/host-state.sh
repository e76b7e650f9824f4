# shellcheck shell=sh
# host-state.sh STATE_DIR PROFILE: what `pantheros status` reads from a
# host, in one round trip and changing nothing, each after a "== name"
# line: the profile's current generation and its system (the boot
# default), the running and the booted system, the kernel, initrd and
# modules of each (a difference needs a reboot), whether systemd runs the
# host and its failed units, the deploy lock's holder and age in seconds,
# the last deploy record, and the system of a `--reboot` trial whose marker
# is still there.
set -u
state=$1 profile=$2
link=$(readlink "$profile" 2>/dev/null || true)
generation=${link%-link}
generation=${generation##*-}
echo "== generation"
case $generation in
  '' | *[!0-9]*) ;;
  *) echo "$generation" ;;
esac
echo "== profile"
readlink -e "$profile" 2>/dev/null || echo
echo "== running"
readlink -e /run/current-system 2>/dev/null || echo
echo "== booted"
readlink -e /run/booted-system 2>/dev/null || echo
for which in running booted; do
  echo "== $which-boot-files"
  [ "$which" = running ] && sys=/run/current-system || sys=/run/booted-system
  for f in kernel initrd kernel-modules; do
    echo "$f $(readlink -e "$sys/$f" 2>/dev/null || true)"
  done
done
echo "== systemd"
if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
  echo yes
  echo "== failed"
  systemctl --failed --no-legend --plain 2>/dev/null | awk '{ print $1 }'
else
  echo no
fi
echo "== lock"
if [ -d "$state/lock" ]; then
  owner=$(cat "$state/lock/owner" 2>/dev/null || echo 'unknown holder')
  since=$(stat -c %Y "$state/lock" 2>/dev/null || date +%s)
  echo "$(($(date +%s) - since)) $owner"
fi
echo "== record"
cat "$state/records/last.json" 2>/dev/null || true
echo
echo "== trial"
sed -n 's/^toplevel=//p' "$state/trial" 2>/dev/null || true
