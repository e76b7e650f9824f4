#!/bin/bash
# Build (once) the Debian rootfs that systemd hosts boot with systemd-nspawn:
# systemd as PID 1, sshd, nix-bin 2.8, curl. Cached under $1; a finished
# build leaves $1/rootfs.ok. Takes about a minute from nothing.
set -euo pipefail
CACHE=$1
R=$CACHE/rootfs
[ -e "$CACHE/rootfs.ok" ] && exit 0
exec 9>"$CACHE.lock"
flock 9
[ -e "$CACHE/rootfs.ok" ] && exit 0
command -v systemd-nspawn >/dev/null && command -v debootstrap >/dev/null || {
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q systemd-container debootstrap >/dev/null
}
mkdir -p "$CACHE"
rm -rf "$R"
debootstrap --variant=minbase \
  --include=systemd,systemd-sysv,dbus,openssh-server,iproute2,curl,ca-certificates,procps \
  bookworm "$R" http://deb.debian.org/debian >"$CACHE/debootstrap.log" 2>&1 ||
  { tail -20 "$CACHE/debootstrap.log" >&2; exit 1; }
# nix-bin separately: debootstrap cannot resolve its virtual dependency perl-dbdabi-94.
DEBIAN_FRONTEND=noninteractive chroot "$R" apt-get install -y -q nix-bin nix-setup-systemd >>"$CACHE/debootstrap.log" 2>&1 ||
  { tail -20 "$CACHE/debootstrap.log" >&2; exit 1; }
chroot "$R" apt-get clean
printf 'sandbox = false\nsubstituters =\nexperimental-features = nix-command flakes\n' > "$R/etc/nix/nix.conf"
echo target > "$R/etc/hostname"
# No console login prompts: they only cost memory.
rm -f "$R/etc/systemd/system/getty.target.wants/"* 2>/dev/null || true
touch "$CACHE/rootfs.ok"
