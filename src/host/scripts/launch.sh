# shellcheck shell=sh
# launch.sh DIR UNIT UNTIL SECONDS ARG...: write activate.sh (which pantheros
# sends inside this script, as the function activate_text) to DIR and start
# it with ARGs, detached from this SSH session: as a transient systemd unit
# when systemd runs the host, else in a new session. A dropped connection
# cannot stop it halfway. Then, unless UNTIL is "-", wait in the same command
# (await_status, up to SECONDS) until the status starts with UNTIL or is
# final, and report it after "== status": the deployer's first wait costs
# no round trip of its own.
set -eu
dir=$1 unit=$2 until=$3 seconds=$4
shift 4
mkdir -p "$dir"
chmod 0700 "$dir"
rm -f "$dir/status" "$dir/confirm" "$dir/watchdog"
# Run directories (STATE/runs/RUN) outlive a reboot: keep the newest ten.
# shellcheck disable=SC2012 # run ids have no spaces or newlines
ls -1dt "$(dirname "$dir")"/*/ 2>/dev/null | tail -n +11 | while read -r old; do
  rm -rf "$old"
done
script="$dir/activate.sh"
activate_text >"$script.tmp"
mv -f "$script.tmp" "$script"
if [ -d /run/systemd/system ] && command -v systemd-run >/dev/null 2>&1; then
  systemd-run --unit="$unit" --description="pantheros activation" --collect --quiet \
    --property=KillMode=process -- /bin/sh "$script" "$@"
else
  setsid -f /bin/sh "$script" "$@" </dev/null >/dev/null 2>&1
fi
echo launched
[ "$until" != - ] || exit 0
echo "== status"
await_status "$dir" "$until" "$seconds"
