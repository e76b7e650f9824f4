#!/usr/bin/env bash
# The test world's rebootable machine: power, firmware and boot loader for
# one systemd host, around systemd-nspawn.
#
#   machine.sh HDIR ROOT BASE_TMPFILES NETNS -- NSPAWN_ARGS...
#
# ROOT is the host's disk (a persistent overlay of the cached rootfs): what
# it writes survives a reboot, as /nix, /boot and /var do on a real host.
# Before each boot the stand-in firmware chooses what to boot the way
# systemd-boot does: the one-shot entry (the EFI variable LoaderEntryOneShot,
# here a file the stand-in bootctl writes under
# /var/lib/pantheros-test-world/efivars, consumed by this boot), else the
# default of /boot/loader/loader.conf, else (no loader installed yet) the
# base system. An entry's `options init=/nix/store/…/init` names the
# toplevel. "Stage 2" then does what NixOS's does for that toplevel before
# systemd starts: /run/booted-system and /run/current-system point at it
# (a tmpfiles.d file bound into the container) and its units
# (etc/systemd/system) are the host's units.
#
# A reboot inside the container (systemd-nspawn exits 133), or nspawn
# killed from outside (a power cycle: the Hetzner fake's reset, a test),
# boots again; a power-off (exit 0) or HDIR/power-off ends the loop.
# Each boot is a line in HDIR/boots: "boot N HOW ENTRY TOPLEVEL", then
# "exit N RC". Each container start gets its own boot id from nspawn.
#
# The host's network namespace outlives its boots (it is the world's, as a
# NIC is the machine's): its nftables ruleset, which a real reboot empties,
# is flushed before each boot.
#
# Not reproduced: a kernel or an initrd (the container shares this
# machine's), EFI itself, boot counting, the loader's menu and timeout.
set -u
hdir=$1 root=$2 base_tmpfiles=$3 netns=$4
shift 4
[ "${1:-}" = -- ] && shift
esp=$root/boot
oneshot=$root/var/lib/pantheros-test-world/efivars/LoaderEntryOneShot
manifest=$root/nix/var/pantheros-fixture/units
n=0

# A store path inside ROOT (the toplevel's links are absolute).
inside() {
  local p=$1 i=0
  while [ -L "$root$p" ] && [ $i -lt 20 ]; do
    local t
    t=$(readlink "$root$p")
    case "$t" in /*) p=$t ;; *) p=$(dirname "$p")/$t ;; esac
    i=$((i + 1))
  done
  printf '%s' "$root$p"
}

# The entry this boot uses, and how it was chosen.
choose() {
  how=none entry=''
  if [ -s "$oneshot" ]; then
    entry=$(tr -d '\n' <"$oneshot")
    rm -f "$oneshot"
    how=oneshot
    [ -f "$esp/loader/entries/$entry" ] || how=oneshot-missing entry=''
  fi
  if [ -z "$entry" ] && [ -f "$esp/loader/loader.conf" ]; then
    entry=$(awk '$1 == "default" { print $2 }' "$esp/loader/loader.conf")
    [ "$how" = none ] && how=default
    [ -f "$esp/loader/entries/$entry" ] || entry=''
  fi
  toplevel=''
  if [ -n "$entry" ]; then
    toplevel=$(sed -n 's|^options.* init=\([^ ]*\)/init.*$|\1|p; s|^options init=\([^ ]*\)/init$|\1|p' \
      "$esp/loader/entries/$entry" | head -n 1)
  fi
}

# NixOS's stage 2 for TOPLEVEL: the run links and the system's units.
stage2() {
  if [ -z "$toplevel" ] || [ ! -d "$(inside "$toplevel")" ]; then
    cp "$base_tmpfiles" "$hdir/boot-tmpfiles.conf"
    return
  fi
  {
    grep -v '^L+ /run/\(current\|booted\)-system' "$base_tmpfiles"
    echo "L+ /run/current-system - - - - $toplevel"
    echo "L+ /run/booted-system - - - - $toplevel"
  } >"$hdir/boot-tmpfiles.conf"
  local units_dir=$root/etc/systemd/system src u
  src=$(inside "$toplevel/etc")/systemd/system
  mkdir -p "$units_dir/multi-user.target.wants" "$(dirname "$manifest")"
  while read -r u; do
    [ -n "$u" ] && rm -f "$units_dir/$u" "$units_dir/multi-user.target.wants/$u"
  done <"$manifest" 2>/dev/null || true
  : >"$manifest"
  if [ -d "$src" ]; then
    for f in "$src"/*.service; do
      [ -e "$f" ] || continue
      u=$(basename "$f")
      cp "$f" "$units_dir/$u"
      if [ -e "$src/multi-user.target.wants/$u" ]; then
        ln -sfn "../$u" "$units_dir/multi-user.target.wants/$u"
      fi
      echo "$u" >>"$manifest"
    done
  fi
}

while [ ! -e "$hdir/power-off" ]; do
  n=$((n + 1))
  choose
  stage2
  ip netns exec "$netns" nft flush ruleset 2>/dev/null || true
  echo "boot $n $how ${entry:--} ${toplevel:--}" >>"$hdir/boots"
  setsid systemd-nspawn "$@" &
  echo $! >"$hdir/nspawn.pid"
  wait $!
  rc=$?
  echo "exit $n $rc" >>"$hdir/boots"
  # 133: the container asked for a reboot; 0: it powered off.
  [ $rc -eq 0 ] && break
  sleep 0.2
done
rm -f "$hdir/nspawn.pid"
