#!/bin/bash
# Build (once) the Debian rootfs that systemd hosts boot with systemd-nspawn:
# systemd as PID 1, sshd, Debian's nix-bin (2.8 on bookworm, 2.26 on
# trixie), curl. $1: the cache directory; $2: the release (default
# bookworm). A finished build leaves $1/rootfs.ok. About a minute from
# nothing.
set -euo pipefail
CACHE=$1
RELEASE=${2:-bookworm}
R=$CACHE/rootfs
# Bump when the package list or the setup below changes.
VERSION=6
ready() { [ "$(cat "$CACHE/rootfs.ok" 2>/dev/null)" = "$VERSION" ]; }
ready && exit 0
mkdir -p "$(dirname "$CACHE")"
exec 9>"$CACHE.lock"
flock 9
ready && exit 0
rm -f "$CACHE/rootfs.ok"
if ! command -v systemd-nspawn >/dev/null || ! command -v debootstrap >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q systemd-container debootstrap >/dev/null
fi
mkdir -p "$CACHE"
rm -rf "$R"
debootstrap --variant=minbase \
  --include=systemd,systemd-sysv,dbus,openssh-server,iproute2,curl,ca-certificates,procps,sudo,nftables \
  "$RELEASE" "$R" http://deb.debian.org/debian >"$CACHE/debootstrap.log" 2>&1 ||
  { tail -20 "$CACHE/debootstrap.log" >&2; exit 1; }
# nix-bin separately: debootstrap cannot resolve its virtual dependency perl-dbdabi-94.
DEBIAN_FRONTEND=noninteractive chroot "$R" apt-get install -y -q nix-bin nix-setup-systemd >>"$CACHE/debootstrap.log" 2>&1 ||
  { tail -20 "$CACHE/debootstrap.log" >&2; exit 1; }
chroot "$R" apt-get clean
# The same Nix settings as the deployer's (scripts/setup) and the light hosts'.
cp "$(dirname "$0")/../../../scripts/nix-settings.conf" "$R/etc/nix/nix.conf"
echo target > "$R/etc/hostname"
# No console login prompts: they only cost memory.
rm -f "$R/etc/systemd/system/getty.target.wants/"* 2>/dev/null || true
# A non-root deploy user with password-less sudo, and one whose sudo wants a password.
chroot "$R" useradd -m -s /bin/bash -G nix-users deploy
chroot "$R" useradd -m -s /bin/bash -G nix-users nopw
echo 'deploy ALL=(ALL) NOPASSWD: ALL' > "$R/etc/sudoers.d/deploy"
echo 'nopw ALL=(ALL) ALL' > "$R/etc/sudoers.d/nopw"
# nopw's password, which its sudo asks for (the tests hand it to pantheros).
echo 'nopw:nopw-sudo-secret-7731' | chroot "$R" chpasswd
chmod 0440 "$R/etc/sudoers.d/deploy" "$R/etc/sudoers.d/nopw"
# Let the deploy user talk to the nix daemon as a trusted user (nix copy).
echo 'trusted-users = root deploy nopw' >> "$R/etc/nix/nix.conf"
echo "$VERSION" > "$CACHE/rootfs.ok"
