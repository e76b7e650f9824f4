# shellcheck shell=sh
# launch.sh DIR UNIT SCRIPT ARG...: start SCRIPT (activate.sh's text) with
# ARGs detached from this SSH session, as a transient systemd unit when
# systemd runs the host, else in a new session; a dropped connection cannot
# stop it halfway.
set -eu
dir=$1 unit=$2
shift 2
mkdir -p "$dir"
rm -f "$dir/status" "$dir/confirm"
if [ -d /run/systemd/system ] && command -v systemd-run >/dev/null 2>&1; then
  systemd-run --unit="$unit" --description="pantheros activation" --collect --quiet \
    --property=KillMode=process -- /bin/sh -c "$@"
else
  setsid -f /bin/sh -c "$@" </dev/null >/dev/null 2>&1
fi
echo launched
