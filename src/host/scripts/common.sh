# shellcheck shell=sh
# Shared by every script pantheros runs on a target: pantheros sends it in
# front of each script (after the protocol constants, EXIT_* and ST_*, which
# src/host/protocol.rs defines once for both sides).

# One line per generation of profile $1, tab-separated:
#   GEN <number> <date time> <(current)|-> <system> <present yes|no> <nixos-version> <closure bytes|->
# With $2 = yes, the closure size is computed too (slow on big systems).
# shellcheck disable=SC2317,SC2329 # shared: not every script calls it
list_generations() {
  lg_profile=$1 lg_sizes=${2:-no}
  nix-env -p "$lg_profile" --list-generations 2>/dev/null | while read -r n d t cur; do
    sys=$(readlink -f "$lg_profile-$n-link" 2>/dev/null)
    present=no
    [ -n "$sys" ] && [ -e "$sys" ] && present=yes
    ver=
    [ "$present" = yes ] && [ -r "$sys/nixos-version" ] && ver=$(head -n 1 "$sys/nixos-version")
    size=-
    if [ "$lg_sizes" = yes ] && [ "$present" = yes ]; then
      # shellcheck disable=SC2046 # one store path per word, as nix-store prints them
      size=$(nix-store -q --size $(nix-store -qR "$sys") | awk '{ s += $1 } END { print s }')
    fi
    printf 'GEN\t%s\t%s %s\t%s\t%s\t%s\t%s\t%s\n' "$n" "$d" "$t" "${cur:--}" "$sys" "$present" "$ver" "$size"
  done
}

# The current generation number of profile $1 ("" when it has none).
# shellcheck disable=SC2317,SC2329 # shared: not every script calls it
current_generation() {
  nix-env -p "$1" --list-generations 2>/dev/null | awk '$NF == "(current)" { print $1 }'
}

# Whether the watchdog of run directory $1 still runs: prints "running",
# "unstarted" (activate.sh has not recorded itself yet), "rebooted" (it ran
# in an earlier boot of this host: a reboot ended it) or "stopped" (it ended,
# or was killed, without a final status). DIR/watchdog holds "BOOT_ID PID".
# shellcheck disable=SC2317,SC2329 # shared: not every script calls it
watchdog_state() {
  ws_dir=$1
  if [ ! -r "$ws_dir/watchdog" ]; then
    echo unstarted
    return
  fi
  read -r ws_boot ws_pid <"$ws_dir/watchdog" || true
  if [ "$ws_boot" != "$(cat /proc/sys/kernel/random/boot_id 2>/dev/null)" ]; then
    echo rebooted
  elif kill -0 "$ws_pid" 2>/dev/null && grep -q activate "/proc/$ws_pid/cmdline" 2>/dev/null; then
    echo running
  else
    echo stopped
  fi
}

# Is status line $1 final (nothing changes it any more)?
# shellcheck disable=SC2317,SC2329 # shared: not every script calls it
status_final() {
  case "$1" in
  "$ST_CONFIRMED"* | "$ST_DONE"* | "$ST_FAILED"* | "$ST_ROLLED_BACK"* | "$ST_ROLLBACK_FAILED"* | "$ST_REBOOT_REQUIRED"*) return 0 ;;
  *) return 1 ;;
  esac
}

# The status of run directory $1, as the deployer reads it: the status line
# ("" before the first one). When that status is not final and the watchdog
# no longer runs, a second line says so: "ended rebooted|stopped
# RUNNING_SYSTEM" (nothing will change the status any more; RUNNING_SYSTEM is
# what the host runs now).
# shellcheck disable=SC2317,SC2329 # shared: not every script calls it
report_status() {
  rs_st=$(cat "$1/status" 2>/dev/null || true)
  if status_final "$rs_st"; then
    printf '%s\n' "$rs_st"
    return 0
  fi
  rs_ws=$(watchdog_state "$1")
  case "$rs_ws" in
  rebooted | stopped)
    # The watchdog may have written its last status just before it ended.
    rs_st=$(cat "$1/status" 2>/dev/null || true)
    printf '%s\n' "$rs_st"
    status_final "$rs_st" || echo "ended $rs_ws $(readlink -f /run/current-system 2>/dev/null || true)"
    ;;
  *) printf '%s\n' "$rs_st" ;;
  esac
}

# Wait, on the host, up to $3 seconds until run directory $1's status
# starts with $2 or is final, or its watchdog has ended; then report it. The
# status file is read every 50 ms with the shell's own `read` (no process
# per look); whether the watchdog still runs is asked once a second. The
# deployer's wait is one command, and it returns within 50 ms of the change.
# shellcheck disable=SC2317,SC2329 # shared: not every script calls it
await_status() {
  as_dir=$1 as_until=$2 as_ticks=$(($3 * 20)) as_n=0
  while [ "$as_ticks" -gt 0 ]; do
    as_st=''
    { read -r as_st <"$as_dir/status"; } 2>/dev/null || true
    case "$as_st" in "$as_until"*) break ;; esac
    status_final "$as_st" && break
    as_n=$((as_n + 1))
    if [ $((as_n % 20)) -eq 0 ]; then
      case "$(watchdog_state "$as_dir")" in rebooted | stopped) break ;; esac
    fi
    sleep 0.05
    as_ticks=$((as_ticks - 1))
  done
  report_status "$as_dir"
}

# health_round SYSTEMD(yes|no) TIMEOUT [--baseline UNIT...] [--services UNIT...] [--http URL...] [--commands CMD...]:
# one round of health checks, each bounded by TIMEOUT seconds (and killed
# when it overruns); prints each problem, returns 1 when there is one. Units
# in --baseline had failed before the deploy: they are reported, not blamed.
# Not `set -e`: every check runs, and each failure is reported. A subshell,
# so its variables and its exit stay its own (health.sh runs it alone, and
# confirm.sh after the proof, in the same remote command).
# shellcheck disable=SC2317,SC2329 # shared: not every script calls it
health_round() (
  hr_systemd=$1 hr_t=$2
  shift 2
  hr_section=
  hr_fail=0
  hr_baseline=" "
  for hr_a in "$@"; do
    case "$hr_a" in
    --baseline | --services | --http | --commands)
      hr_section=$hr_a
      continue
      ;;
    esac
    case "$hr_section" in
    --baseline)
      hr_baseline="$hr_baseline$hr_a "
      ;;
    --services)
      if ! systemctl is-active --quiet "$hr_a"; then
        echo "service $hr_a is $(systemctl is-active "$hr_a" 2>/dev/null)"
        hr_fail=1
      fi
      ;;
    --http)
      if ! command -v curl >/dev/null 2>&1; then
        echo "http check $hr_a: curl is not installed on the host"
        hr_fail=1
        continue
      fi
      if ! hr_code=$(curl -sS -o /dev/null -m "$hr_t" -w '%{http_code}' "$hr_a" 2>&1) || [ "${hr_code#2}" = "$hr_code" ]; then
        echo "http $hr_a answered $hr_code"
        hr_fail=1
      fi
      ;;
    --commands)
      hr_out=$(timeout -k 2 "$hr_t" sh -c "$hr_a" 2>&1)
      hr_rc=$?
      if [ "$hr_rc" -eq 124 ] || [ "$hr_rc" -eq 137 ]; then
        echo "command timed out after ${hr_t}s: $hr_a"
        hr_fail=1
      elif [ "$hr_rc" -ne 0 ]; then
        echo "command failed: $hr_a: $(printf '%s' "$hr_out" | tail -n 3)"
        hr_fail=1
      fi
      ;;
    esac
  done
  if [ "$hr_systemd" = yes ]; then
    hr_state=$(timeout -k 2 "$hr_t" systemctl is-system-running --wait 2>/dev/null)
    [ -n "$hr_state" ] || hr_state=unknown
    if [ "$hr_state" != running ]; then
      hr_new=
      hr_old=
      for hr_u in $(systemctl --failed --no-legend --plain 2>/dev/null | awk '{ print $1 }'); do
        case "$hr_baseline" in
        *" $hr_u "*) hr_old="$hr_old $hr_u" ;;
        *) hr_new="$hr_new $hr_u" ;;
        esac
      done
      if [ "$hr_state" = degraded ] && [ -z "$hr_new" ] && [ -n "$hr_old" ]; then
        echo "note: units that had failed before this deploy are still failed:$hr_old"
      else
        echo "system is $hr_state"
        for hr_u in $hr_new; do echo "  failed unit: $hr_u"; done
        hr_fail=1
      fi
    fi
  fi
  exit $hr_fail
)

# "== NAME", then the closure of store path $2 with each path's size
# ("path<TAB>bytes"); nothing under the heading for a missing or empty path.
# shellcheck disable=SC2317,SC2329 # shared: not every script calls it
list_closure() {
  echo "== $1"
  if [ -z "$2" ] || [ ! -e "$2" ]; then return 0; fi
  lc_list=$(mktemp) || return 1
  nix-store -qR "$2" >"$lc_list"
  # shellcheck disable=SC2046 # one store path per word
  nix-store -q --size $(cat "$lc_list") | paste "$lc_list" -
  rm -f "$lc_list"
}

# NixOS's activation lock (switch-to-configuration takes it with flock).
ACTIVATION_LOCK=/run/nixos/switch-to-configuration.lock

# Wait up to $1 seconds for no activation to hold NixOS's activation lock;
# 0 when it is free. (A shared flock, released at once: it is granted only
# while no switch-to-configuration holds the lock.)
# shellcheck disable=SC2317,SC2329 # shared: not every script calls it
activation_lock_free() {
  [ -e "$ACTIVATION_LOCK" ] || return 0
  flock -s -w "$1" "$ACTIVATION_LOCK" true 2>/dev/null
}

# "yes" when this host's Nix trusts the binary cache key $1 (its
# trusted-public-keys: paths signed with it substitute here), else "no".
# shellcheck disable=SC2317,SC2329 # shared: not every script calls it
cache_trusts_key() {
  ctk_keys=$(nix --extra-experimental-features nix-command config show trusted-public-keys 2>/dev/null ||
    nix --extra-experimental-features nix-command show-config 2>/dev/null | sed -n 's/^trusted-public-keys = //p')
  case " $ctk_keys " in
  *" $1 "*) echo yes ;;
  *) echo no ;;
  esac
}

# Wait up to $1 seconds for systemd to settle (SystemState running,
# degraded or maintenance), as NixOS's activation program does before it
# does anything; 0 when it did (or systemd does not run the host), 1 when it
# is still starting then.
# shellcheck disable=SC2317,SC2329 # shared: not every script calls it
system_settled() {
  [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1 || return 0
  ss_ticks=$(($1 * 5))
  while :; do
    case $(systemctl is-system-running 2>/dev/null) in
    initializing | starting) ;;
    *) return 0 ;;
    esac
    [ "$ss_ticks" -gt 0 ] || return 1
    sleep 0.2
    ss_ticks=$((ss_ticks - 1))
  done
}

# The jobs systemd still has queued ("UNIT (TYPE)" per line, at most 5).
# shellcheck disable=SC2317,SC2329 # shared: not every script calls it
queued_jobs() {
  systemctl list-jobs --no-legend --plain 2>/dev/null | awk 'NR <= 5 { print $2 " (" $3 ")" }'
}

# Who holds NixOS's activation lock: "pid PID: COMMAND LINE" per process
# that has it open (the pid /proc/locks names may be a `flock` command that
# has exited while its shell keeps the lock). The caller's own shell is left
# out; nothing when no process has it open.
# shellcheck disable=SC2317,SC2329 # shared: not every script calls it
activation_lock_holders() {
  find /proc/[0-9]*/fd -lname "$ACTIVATION_LOCK" 2>/dev/null | cut -d/ -f3 | sort -un |
    while read -r alh_pid; do
      [ "$alh_pid" = "$$" ] && continue
      alh_cmd=$(tr '\0' ' ' <"/proc/$alh_pid/cmdline" 2>/dev/null)
      [ -n "$alh_cmd" ] || alh_cmd=$(cat "/proc/$alh_pid/comm" 2>/dev/null)
      printf 'pid %s: %s\n' "$alh_pid" "${alh_cmd% }"
    done
}

# write_record STATE_DIR RUN_ID: the deploy record (JSON, on stdin) goes to
# STATE_DIR/records/RUN_ID.json and STATE_DIR/records/last.json, each
# written to a temporary file first and renamed, so a reader sees the old
# record or the new one, never a part. The newest 50 records are kept.
# shellcheck disable=SC2317,SC2329 # shared: not every script calls it
write_record() {
  wr_dir=$1/records
  wr_run=$2
  mkdir -p "$wr_dir" || return 1
  wr_tmp=$(mktemp "$wr_dir/.new.XXXXXX") || return 1
  if ! { cat >"$wr_tmp" && chmod 0644 "$wr_tmp" && cp "$wr_tmp" "$wr_dir/.last.$$" &&
    mv -f "$wr_tmp" "$wr_dir/$wr_run.json" && mv -f "$wr_dir/.last.$$" "$wr_dir/last.json"; }; then
    rm -f "$wr_tmp" "$wr_dir/.last.$$"
    return 1
  fi
  # Prune: oldest first by name (run ids start with the time).
  for wr_f in "$wr_dir"/*.json; do
    [ "$wr_f" = "$wr_dir/last.json" ] || printf '%s\n' "$wr_f"
  done | sort | head -n -50 | while read -r wr_old; do
    rm -f "$wr_old"
  done
}
