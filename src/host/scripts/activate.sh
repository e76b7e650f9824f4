# shellcheck shell=sh
# pantheros target-side activation. POSIX sh; runs detached from the SSH
# session (under systemd-run, or setsid), so a dropped connection cannot
# stop it halfway.
#
#   activate.sh activate DIR PROFILE TOPLEVEL GOAL MAGIC CONFIRM_TIMEOUT ACTIVATION_TIMEOUT FAIL_ON_UNITS BASELINE FORCE [GENERATION]
#     (with GENERATION, the profile switches to that existing generation instead
#     of gaining a new one: that is how `pantheros rollback` activates;
#     BASELINE is the comma-separated list of units that had failed before
#     this run, "-" for none: switch-to-configuration's exit 4 is about the
#     whole host, so only units outside it are this run's doing; FORCE=1
#     sets NIXOS_NO_CHECK=1, skipping the pre-switch checks)
#   activate.sh rollback DIR PROFILE GOAL REASON
#
# Progress goes to DIR/status (one line, replaced atomically); the words are
# the ST_* constants of src/host/protocol.rs (sent in front of this script):
#   activating | awaiting-confirm | confirmed | done
#   failed <reason>            nothing changed (e.g. the profile could not be set)
#   rolling-back <reason>      going back to the previous generation
#   rolled-back <reason>       the previous generation is active again
#   rollback-failed <reason>   manual action needed
#   reboot-required <reason>   NixOS would not activate the new system live:
#                              it is the boot default (exit 100), or the
#                              pre-switch checks refused it (profile put back)
# awaiting-confirm and done may carry a note after the word (units that were
# already failing before this run).
# DIR/prev holds "GENERATION SYSTEM" of the generation before activation.
set -u
PATH="$PATH:/run/current-system/sw/bin:/nix/var/nix/profiles/default/bin:/usr/bin:/bin:/usr/sbin:/sbin"
mode=$1
dir=$2
profile=$3
mkdir -p "$dir"
exec >>"$dir/log" 2>&1
# Who watches this run, so the deployer (status.sh) can tell a watchdog that
# a reboot or a kill ended from one that is still at work.
echo "$(cat /proc/sys/kernel/random/boot_id 2>/dev/null) $$" >"$dir/watchdog.tmp" && mv -f "$dir/watchdog.tmp" "$dir/watchdog"

# A status that cannot be written (a full /run) would leave the deployer
# waiting on a stale line: give up this run's own log and try once more.
write_status() {
  printf '%s\n' "$*" >"$dir/status.tmp" 2>/dev/null && mv -f "$dir/status.tmp" "$dir/status"
}
status() {
  if ! write_status "$@"; then
    : >"$dir/log" 2>/dev/null
    write_status "$@" || true
  fi
  echo "[$(date '+%H:%M:%S')] status: $*"
}

# What a switch prints is kept up to OUTPUT_LIMIT bytes (the rest is read and
# dropped), so a chatty activation cannot fill /run.
OUTPUT_LIMIT=1048576
run_logged() {
  rm -f "$dir/output"
  if ! mkfifo "$dir/output" 2>/dev/null; then
    "$@"
    return
  fi
  {
    head -c "$OUTPUT_LIMIT" | tee "$dir/switch-output"
    if [ "$(wc -c)" -gt 0 ]; then
      echo
      echo "[output beyond $OUTPUT_LIMIT bytes dropped]"
    fi
  } <"$dir/output" &
  rl_reader=$!
  "$@" >"$dir/output" 2>&1
  rl_rc=$?
  # A process the switch left running may hold the pipe open: wait for the
  # reader a little, never for good (it drops what comes later anyway).
  rl_ticks=30
  while kill -0 "$rl_reader" 2>/dev/null && [ "$rl_ticks" -gt 0 ]; do
    sleep 0.1
    rl_ticks=$((rl_ticks - 1))
  done
  rm -f "$dir/output"
  return "$rl_rc"
}

# When the deployer stopped waiting (it was interrupted) it hands the host's
# deploy lock over to this watchdog (DIR/handover): released when the
# watchdog ends, if the lock is still this run's.
hand_back() {
  [ -e "$dir/handover" ] || return 0
  lock="$(dirname "$(dirname "$dir")")/lock"
  if [ "$(cut -d' ' -f1 "$lock/owner" 2>/dev/null)" = "$(basename "$dir")" ]; then
    rm -rf "$lock"
    echo "[$(date '+%H:%M:%S')] released the deploy lock handed over by the deployer"
  fi
}
trap hand_back EXIT

# What the switch said about its failure: its last line that reads like an
# error, else its last line (the real program exits with errno-style codes,
# 2, 11, 13, …, that say little alone).
last_words() {
  lw=$(grep -i -E 'fail|error|cannot|could not|refus|missing|denied' "$dir/switch-output" 2>/dev/null | tail -n 1)
  [ -n "$lw" ] || lw=$(grep -v '^[[:space:]]*$' "$dir/switch-output" 2>/dev/null | tail -n 1)
  lw=$(printf '%s' "$lw" | cut -c1-200)
  [ -n "$lw" ] && printf ' (%s)' "$lw"
}

# Run "$@" for at most $1 seconds; what ignores SIGTERM is killed 10 s later.
bounded() {
  b_limit=$1
  shift
  if command -v timeout >/dev/null 2>&1; then
    timeout -k 10 "$b_limit" "$@"
  else
    "$@"
  fi
}

# Units failed now, one per line.
failed_units() {
  systemctl --failed --no-legend --plain 2>/dev/null | awk '{ print $1 }' | sort -u
}

# Split the units failed now into this run's (new_failed) and those in the
# baseline (old_failed), each a ", "-separated list.
judge_failed() {
  new_failed='' old_failed=''
  for u in $(failed_units); do
    case ",$baseline," in
    *",$u,"*) old_failed="${old_failed:+$old_failed, }$u" ;;
    *) new_failed="${new_failed:+$new_failed, }$u" ;;
    esac
  done
}

# Switch the profile back to generation $1 (system $2) and activate it.
roll_back_to() {
  gen=$1 sys=$2 goal=$3 reason=$4
  status "$ST_ROLLING_BACK $reason"
  if [ -z "$gen" ] || [ -z "$sys" ]; then
    status "$ST_ROLLBACK_FAILED $reason; there is no previous generation to return to"
    exit 1
  fi
  if ! nix-env -p "$profile" --switch-generation "$gen"; then
    status "$ST_ROLLBACK_FAILED $reason; nix-env --switch-generation $gen failed"
    exit 1
  fi
  case "$goal" in boot) rgoal=boot ;; test) rgoal="test" ;; *) rgoal=switch ;; esac
  # Bounded like the activation itself: a rollback that hangs ends, and says so.
  limit=$(cat "$dir/timeout" 2>/dev/null || echo 600)
  run_logged bounded "$limit" "$sys/bin/switch-to-configuration" "$rgoal"
  rc=$?
  if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
    status "$ST_ROLLBACK_FAILED $reason; switch-to-configuration of generation $gen did not finish within ${limit}s"
    exit 1
  fi
  if [ $rc -ne 0 ] && [ $rc -ne "$EXIT_UNITS_FAILED" ]; then
    status "$ST_ROLLBACK_FAILED $reason; switch-to-configuration of generation $gen exited $rc$(last_words)"
    exit 1
  fi
  if [ $rc -eq "$EXIT_UNITS_FAILED" ]; then
    judge_failed
    if [ -n "$new_failed" ]; then
      reason="$reason; after going back, units still failed: $new_failed"
    fi
    if [ -n "$old_failed" ]; then
      reason="$reason; the previous system's switch exited 4 only for units already failing before this deploy: $old_failed"
    fi
  fi
  status "$ST_ROLLED_BACK $reason"
  exit 0
}

case "$mode" in
activate)
  toplevel=$4 goal=$5 magic=$6 confirm_timeout=$7 activation_timeout=$8 fail_on_units=$9
  shift 9
  baseline=$1 force=$2
  shift 2
  generation=${1:-}
  [ "$baseline" = - ] && baseline=''
  echo "$baseline" >"$dir/baseline"
  if [ "$force" = 1 ]; then
    NIXOS_NO_CHECK=1
    export NIXOS_NO_CHECK
  fi
  prev_gen=$(current_generation "$profile")
  prev_sys=$(readlink -f "$profile" 2>/dev/null || true)
  echo "$prev_gen $prev_sys" >"$dir/prev"
  # Another activation (a nixos-rebuild, another tool) holds NixOS's lock:
  # wait for it within the activation's time, before anything changes.
  if ! activation_lock_free "$activation_timeout"; then
    holders=$(activation_lock_holders | paste -sd';' - | sed 's/;/; /g')
    status "$ST_FAILED another activation held $ACTIVATION_LOCK for ${activation_timeout}s (${holders:-holder unknown}); nothing was changed"
    exit 1
  fi
  if [ -n "$generation" ]; then
    if ! nix-env -p "$profile" --switch-generation "$generation"; then
      status "$ST_FAILED nix-env --switch-generation $generation did not switch the profile"
      exit 1
    fi
  elif [ "$goal" = switch ] || [ "$goal" = boot ]; then
    if ! nix-env -p "$profile" --set "$toplevel"; then
      status "$ST_FAILED nix-env --set did not set the profile"
      exit 1
    fi
  fi
  status "$ST_ACTIVATING"
  echo "$activation_timeout" >"$dir/timeout"
  run_logged bounded "$activation_timeout" "$toplevel/bin/switch-to-configuration" "$goal"
  rc=$?
  echo "switch-to-configuration $goal exited $rc"
  note=''
  if [ $rc -eq "$EXIT_UNITS_FAILED" ]; then
    # Exit 4 lists every unit failed on the host after the switch: judge it
    # against the units that had failed before this run.
    judge_failed
    [ -n "$old_failed" ] && note="already failing before this deploy: $old_failed"
    if [ -z "$new_failed" ]; then
      echo "exit 4 only for units already failing before this deploy: $old_failed"
      rc=0
    elif [ "$fail_on_units" = 0 ]; then
      echo "exit 4 (units failed: $new_failed) is accepted for this host"
      note="units failed (accepted for this host): $new_failed${note:+; $note}"
      rc=0
    else
      roll_back_to "$prev_gen" "$prev_sys" "$goal" "units failed because of this deploy: $new_failed${old_failed:+ (already failing before it: $old_failed)}"
    fi
  fi
  if [ $rc -eq 100 ]; then
    # NixOS's "incompatible init interface": nothing was activated; for
    # switch and boot the new system is already the boot default.
    if [ "$goal" = test ]; then
      status "$ST_FAILED the new system cannot be activated live (switch-to-configuration exited 100: its init is incompatible with the running one); nothing was changed: deploy with --goal boot and reboot"
      exit 1
    fi
    status "$ST_REBOOT_REQUIRED the new system is the boot default and takes effect at the next boot (switch-to-configuration exited 100: its init is incompatible with the running one)"
    exit 0
  fi
  if [ $rc -ne 0 ] && tail -n 40 "$dir/log" 2>/dev/null | grep -q '^Pre-switch checks failed'; then
    # The pre-switch checks refused before anything was activated or the
    # boot loader changed: put the profile back where it was.
    why=$(tail -n 40 "$dir/log" | grep -E ' : .* -> |^Pre-switch check ' | paste -sd';' - | sed 's/;/; /g')
    if [ "$goal" = switch ] || [ "$goal" = boot ] || [ -n "$generation" ]; then
      if [ -n "$prev_gen" ]; then
        nix-env -p "$profile" --switch-generation "$prev_gen" || true
      fi
    fi
    status "$ST_REBOOT_REQUIRED live switch refused by the pre-switch checks (${why:-see the log}); nothing was activated and the boot default is unchanged: deploy with --goal boot and reboot, or with --force-switch"
    exit 0
  fi
  if [ $rc -ne 0 ]; then
    if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
      roll_back_to "$prev_gen" "$prev_sys" "$goal" "switch-to-configuration timed out after ${activation_timeout}s"
    else
      roll_back_to "$prev_gen" "$prev_sys" "$goal" "switch-to-configuration exited $rc$(last_words)"
    fi
  fi
  if [ "$magic" = 1 ] && [ "$goal" != boot ]; then
    status "$ST_AWAITING_CONFIRM${note:+ $note}"
    # The proof is a file (confirm.sh); looked for every 50 ms, with the
    # shell's own test (no process per look but the sleep).
    ticks=$((confirm_timeout * 20))
    while [ "$ticks" -gt 0 ]; do
      if [ -e "$dir/confirm" ]; then
        status "$ST_CONFIRMED"
        exit 0
      fi
      sleep 0.05
      ticks=$((ticks - 1))
    done
    roll_back_to "$prev_gen" "$prev_sys" "$goal" "no confirmation within ${confirm_timeout}s (target unreachable after activation?)"
  fi
  status "$ST_DONE${note:+ $note}"
  ;;
rollback)
  goal=$4 reason=$5
  baseline=$(cat "$dir/baseline" 2>/dev/null || true)
  read -r prev_gen prev_sys <"$dir/prev" || true
  roll_back_to "${prev_gen:-}" "${prev_sys:-}" "$goal" "$reason"
  ;;
*)
  echo "unknown mode $mode" >&2
  exit 2
  ;;
esac
