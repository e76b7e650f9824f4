# shellcheck shell=sh
# Shared by every script pantheros runs on a target: pantheros sends it in
# front of each script (after the protocol constants, EXIT_* and ST_*, which
# src/target/protocol.rs defines once for both sides).

# One line per generation of profile $1, tab-separated:
#   GEN <number> <date time> <(current)|-> <system> <present yes|no> <nixos-version> <closure bytes|->
# With $2 = yes, the closure size is computed too (slow on big systems).
# shellcheck disable=SC2317 # shared: not every script calls it
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
