# shellcheck shell=sh
# closures.sh OLD NEW: each closure's paths with their sizes ("path<TAB>bytes"),
# after "== old" and "== new". A missing or empty system lists nothing.
set -eu
list=$(mktemp)
trap 'rm -f "$list"' EXIT
for spec in "old=$1" "new=$2"; do
  name=${spec%%=*} p=${spec#*=}
  echo "== $name"
  if [ -z "$p" ] || [ ! -e "$p" ]; then continue; fi
  nix-store -qR "$p" >"$list"
  # shellcheck disable=SC2046 # one store path per word
  nix-store -q --size $(cat "$list") | paste "$list" -
done
