# shellcheck shell=sh
# preflight.sh STATE_DIR PROFILE RUN_ID OWNER [NOOP_IF|- [CACHE_KEY]]: take the host's deploy lock (a
# directory: mkdir is atomic; lock/owner names the run that holds it), then
# report the profile's current generation (from its link name, no nix-env),
# the boot default (the profile), the running system, and, unless nothing is
# to be done, whether systemd runs the host and (then) its failed units, each
# section after a "== name" line. When the host already runs and boots
# NOOP_IF, the lock is given back at once and "== noop" ends the report: a
# no-op deploy is one round trip of a few reads. With CACHE_KEY (the
# deploy's binary cache), "== cache-trusted" then yes or no: whether this
# host's Nix trusts that key (cache_trusts_key).
set -u
state=$1 profile=$2 run=$3 owner=$4 noop_if=${5:-} cache_key=${6:-}
[ "$noop_if" = - ] && noop_if=
mkdir -p "$state"
if ! mkdir "$state/lock" 2>/dev/null; then
  echo "LOCKED $(cat "$state/lock/owner" 2>/dev/null || echo 'unknown holder')"
  exit "$EXIT_LOCKED"
fi
echo "$run $owner since $(date -Is)" >"$state/lock/owner"
# The profile links to "<name>-<N>-link"; N is the current generation.
link=$(readlink "$profile" 2>/dev/null || true)
generation=${link%-link}
generation=${generation##*-}
system=$(readlink -f "$profile" 2>/dev/null || true)
running=$(readlink -f /run/current-system 2>/dev/null || true)
echo "== generation"
case $generation in
  '' | *[!0-9]*) ;;
  *) echo "$generation" ;;
esac
echo "== system"
echo "$system"
echo "== running"
echo "$running"
if [ -n "$noop_if" ] && [ "$system" = "$noop_if" ] && [ "$running" = "$noop_if" ]; then
  rm -rf "$state/lock"
  echo "== noop"
  exit 0
fi
echo "== systemd"
if [ -d /run/systemd/system ] && command -v systemd-run >/dev/null 2>&1; then
  echo yes
  # The health checks' baseline: units that failed before this deploy.
  echo "== failed"
  systemctl --failed --no-legend --plain 2>/dev/null | awk '{ print $1 }'
else
  echo no
fi
if [ -n "$cache_key" ]; then
  echo "== cache-trusted"
  cache_trusts_key "$cache_key"
fi
