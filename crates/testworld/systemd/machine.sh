#!/usr/bin/env bash
# The test world's rebootable machine: power, firmware and boot loader for
# one systemd host, around systemd-nspawn.
#
#   machine.sh HDIR ROOT BASE_TMPFILES NETNS -- NSPAWN_ARGS...
#
# ROOT is the host's disk (a persistent overlay of the cached rootfs): what
# it writes survives a reboot, as /nix, /boot and /var do on a real host.
# Before each boot the stand-in firmware chooses what to boot:
# - with GRUB (ROOT/boot/grub/grub.cfg): what NixOS's grub.cfg does: a
#   non-empty `next_entry` in the environment block /boot/grub/grubenv
#   (read and cleared with the real grub-editenv, as the menu's
#   `save_env next_entry` clears it) is booted once, else entry 0 ("NixOS -
#   Default"); an entry is a title, or "SUBMENU>TITLE"; its `linux` line's
#   systemConfig= names the toplevel;
# - with systemd-boot (ROOT/boot/loader): the one-shot entry (the EFI
#   variable LoaderEntryOneShot, here a file the stand-in bootctl writes
#   under /var/lib/pantheros-test-world/efivars, consumed by this boot),
#   else the default of /boot/loader/loader.conf; an entry's `options
#   init=/nix/store/…/init` names the toplevel;
# - with neither installed yet: the base system. "Stage 2" then does what NixOS's does for that toplevel before
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

# GRUB's choice, as NixOS's grub.cfg makes it.
choose_grub() {
  local env=$esp/grub/grubenv cfg=$esp/grub/grub.cfg next
  next=$(grub-editenv "$env" list 2>/dev/null | sed -n 's/^next_entry=//p')
  if [ -n "$next" ]; then
    entry=$next how=next_entry
    grub-editenv "$env" set next_entry=
  else
    entry=0 how=default
  fi
  toplevel=$(awk -v want="$entry" '
    function title(line) { sub(/^[ \t]*(menuentry|submenu) "/, "", line); sub(/".*$/, "", line); return line }
    BEGIN { n = split(want, parts, ">") }
    /^[ \t]*submenu "/ { depth = 1; sub_title = title($0); next }
    /^}/ && depth == 1 && !in_entry { depth = 0; sub_title = ""; next }
    /^[ \t]*menuentry "/ {
      t = title($0); in_entry = 1
      if (depth == 0) { top++; path = t; index_path = top - 1 }
      else { path = sub_title ">" t; index_path = "" }
      hit = (path == want) || (n == 1 && want ~ /^[0-9]+$/ && depth == 0 && index_path == want)
      next
    }
    in_entry && /^[ \t]*linux / {
      if (hit && !found) { for (i = 1; i <= NF; i++) if ($i ~ /^systemConfig=/) { sub(/^systemConfig=/, "", $i); print $i; found = 1 } }
    }
    in_entry && /^[ \t]*}/ { in_entry = 0; hit = 0 }
  ' "$cfg")
  [ -n "$toplevel" ] || how="$how-missing"
}

# The entry this boot uses, and how it was chosen.
choose() {
  how=none entry='' toplevel=''
  if [ -f "$esp/grub/grub.cfg" ]; then
    choose_grub
    return
  fi
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
  shown=${entry:--}
  echo "boot $n $how ${shown// /_} ${toplevel:--}" >>"$hdir/boots"
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
