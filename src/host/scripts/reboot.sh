# shellcheck shell=sh
# reboot.sh MODE STATE_DIR ...: `pantheros deploy --reboot` on the host.
# One mode per step; every mode prints its answer in "== name" sections.
#
#   loader                      which boot loader can boot a generation once:
#                               "== loader" then systemd-boot, or "none WHY"
#   arm PROFILE TOPLEVEL CONFIRM RUN [GENERATION]
#                               put TOPLEVEL in the profile (GENERATION: switch
#                               the profile to that generation instead), let
#                               the running system's boot loader installation
#                               keep the old default (its own
#                               `switch-to-configuration boot`), make the new
#                               generation the one-shot entry, write the trial
#                               marker for the boot watchdog, and reboot a
#                               moment after answering ("== armed": the new
#                               generation, the boot id, the entry)
#   check                       "== boot" id, "== booted" system, "== trial-boots"
#                               (the watchdog's lines)
#   keep PROFILE TOPLEVEL       the trial proved itself: confirm it to the
#                               watchdog, make it the default (its own
#                               `switch-to-configuration boot`), end the trial
#   back PROFILE GENERATION SYSTEM [reboot]
#                               the trial failed: the profile back to
#                               GENERATION, SYSTEM's boot loader installation
#                               (its default again), the trial ended; with
#                               "reboot", reboot into it a moment later
set -u
PATH="$PATH:/run/current-system/sw/bin:/nix/var/nix/profiles/default/bin:/usr/bin:/bin:/usr/sbin:/sbin"
mode=$1 state=$2
shift 2
trial=$state/trial

boot_id() { cat /proc/sys/kernel/random/boot_id 2>/dev/null; }

# The loader a generation can be booted once with (systemd-boot's
# one-shot entry); NONE and the reason otherwise.
loader() {
  if command -v bootctl >/dev/null 2>&1 && bootctl is-installed >/dev/null 2>&1 && [ -d /boot/loader/entries ]; then
    echo systemd-boot
  elif [ -f /boot/grub/grub.cfg ]; then
    echo "none the host boots with GRUB, which pantheros cannot yet boot into a generation once"
  else
    echo "none no systemd-boot found (bootctl is-installed failed) and no GRUB"
  fi
}

# Reboot in 0.3 s, after this command has answered.
reboot_soon() {
  if [ -d /run/systemd/system ] && command -v systemd-run >/dev/null 2>&1; then
    systemd-run --on-active=300ms --timer-property=AccuracySec=50ms --quiet systemctl reboot
  else
    setsid -f sh -c 'sleep 0.3; systemctl reboot || reboot' </dev/null >/dev/null 2>&1
  fi
}

fail() {
  echo "== failed"
  echo "$*"
  exit 1
}

case "$mode" in
loader)
  echo "== loader"
  loader
  ;;
arm)
  profile=$1 toplevel=$2 confirm=$3 run=$4 generation=${5:-}
  case $(loader) in systemd-boot) ;; *) fail "$(loader | cut -d' ' -f2-); nothing was changed" ;; esac
  prev_gen=$(current_generation "$profile")
  prev_sys=$(readlink -f "$profile" 2>/dev/null || true)
  if [ -z "$prev_gen" ] || [ ! -x "$prev_sys/bin/switch-to-configuration" ]; then
    fail "the host has no previous generation to come back to; nothing was changed"
  fi
  if ! activation_lock_free 60; then
    fail "another activation held $ACTIVATION_LOCK for 60s; nothing was changed"
  fi
  if [ -n "$generation" ]; then
    nix-env -p "$profile" --switch-generation "$generation" >/dev/null 2>&1 ||
      fail "nix-env --switch-generation $generation did not switch the profile; nothing was changed"
  else
    nix-env -p "$profile" --set "$toplevel" >/dev/null 2>&1 ||
      fail "nix-env --set did not set the profile; nothing was changed"
  fi
  new_gen=$(current_generation "$profile")
  put_back() {
    nix-env -p "$profile" --switch-generation "$prev_gen" >/dev/null 2>&1
    "$prev_sys/bin/switch-to-configuration" boot >/dev/null 2>&1
  }
  # The old system installs the boot loader: the new generation gets its
  # entry, the old one stays the default.
  if ! out=$("$prev_sys/bin/switch-to-configuration" boot 2>&1); then
    put_back
    fail "the running system's switch-to-configuration boot failed ($(printf '%s' "$out" | tail -n 3 | paste -sd';' -)); the profile is back on generation $prev_gen"
  fi
  entry=nixos-generation-$new_gen.conf
  if ! out=$(bootctl set-oneshot "$entry" 2>&1); then
    put_back
    fail "bootctl set-oneshot $entry failed ($(printf '%s' "$out" | tail -n 3 | paste -sd';' -)); the profile is back on generation $prev_gen"
  fi
  before=$(boot_id)
  mkdir -p "$state"
  rm -f "$state/trial-confirmed" "$state/trial-boots"
  printf 'toplevel=%s\nboot=%s\nconfirm=%s\nrun=%s\nprevGeneration=%s\nprevSystem=%s\n' \
    "$(readlink -f "$profile")" "$before" "$confirm" "$run" "$prev_gen" "$prev_sys" >"$trial.tmp"
  mv -f "$trial.tmp" "$trial"
  sync
  reboot_soon
  echo "== armed"
  echo "$new_gen $before $entry"
  ;;
check)
  echo "== boot"
  boot_id
  echo "== booted"
  readlink -f /run/booted-system 2>/dev/null || echo
  echo "== trial-boots"
  cat "$state/trial-boots" 2>/dev/null || true
  ;;
keep)
  profile=$1 toplevel=$2
  boot_id >"$state/trial-confirmed.tmp" && mv -f "$state/trial-confirmed.tmp" "$state/trial-confirmed"
  if ! out=$("$toplevel/bin/switch-to-configuration" boot 2>&1); then
    fail "switch-to-configuration boot of the new system failed ($(printf '%s' "$out" | tail -n 3 | paste -sd';' -)); it runs now, but the old system is still the boot default"
  fi
  rm -f "$trial"
  echo "== kept"
  echo "$(current_generation "$profile") $(readlink -f "$profile")"
  ;;
back)
  profile=$1 generation=$2 system=$3 then=${4:-}
  nix-env -p "$profile" --switch-generation "$generation" >/dev/null 2>&1 ||
    fail "nix-env --switch-generation $generation failed"
  if ! out=$("$system/bin/switch-to-configuration" boot 2>&1); then
    fail "switch-to-configuration boot of generation $generation failed ($(printf '%s' "$out" | tail -n 3 | paste -sd';' -))"
  fi
  rm -f "$trial" "$state/trial-confirmed"
  [ "$then" = reboot ] && reboot_soon
  echo "== back"
  echo "$(current_generation "$profile") $(readlink -f "$profile")"
  ;;
*)
  echo "unknown mode $mode" >&2
  exit 2
  ;;
esac
