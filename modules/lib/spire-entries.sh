#!/bin/sh
# Reconcile SPIRE registration entries under one parent ID with a desired
# list, so that re-deploys neither duplicate nor leak entries.
#
#   spire-entries.sh SOCKET PARENT_ID DESIRED_FILE
#
# DESIRED_FILE has one entry per line: "<spiffeID> <parentID> <sel>[,<sel>…]"
# (what lib/spire.nix renders as entriesText). Entries under PARENT_ID that
# are not desired, and duplicates, are deleted; missing ones are created.
# Needs `spire-server` and `jq` on PATH.
set -eu
sock=$1
parent=$2
desired=$3
tab=$(printf '\t')

norm_selectors() { printf '%s\n' "$1" | tr ',' '\n' | sed '/^$/d' | sort | paste -sd, -; }

# Desired: "spiffeID<TAB>sorted selectors", one per line.
want=$(while read -r spiffe par sels; do
  [ -n "$spiffe" ] || continue
  printf '%s\t%s\n' "$spiffe" "$(norm_selectors "$sels")"
done <"$desired")

# Existing entries under the parent: "id<TAB>spiffeID<TAB>sorted selectors".
have=$(spire-server entry show -socketPath "$sock" -parentID "$parent" -output json |
  jq -r '.entries[]? | [ .id,
      ("spiffe://" + .spiffe_id.trust_domain + .spiffe_id.path),
      ([ .selectors[] | .type + ":" + .value ] | sort | join(",")) ] | @tsv')

# Delete what is not wanted, and second copies of what is.
seen=""
printf '%s\n' "$have" | while IFS="$tab" read -r id spiffe sels; do
  [ -n "$id" ] || continue
  key="$spiffe$tab$sels"
  if printf '%s\n' "$want" | grep -qxF "$key" && ! printf '%s\n' "$seen" | grep -qxF "$key"; then
    seen="$seen
$key"
    echo "keep $spiffe ($sels)"
  else
    spire-server entry delete -socketPath "$sock" -entryID "$id" >/dev/null
    echo "deleted $spiffe ($sels) [$id]"
  fi
done

# Create what is missing.
while read -r spiffe par sels; do
  [ -n "$spiffe" ] || continue
  key="$spiffe$tab$(norm_selectors "$sels")"
  existing=$(printf '%s\n' "$have" | cut -f2,3)
  if printf '%s\n' "$existing" | grep -qxF "$key"; then
    continue
  fi
  set --
  for sel in $(printf '%s' "$sels" | tr ',' ' '); do
    set -- "$@" -selector "$sel"
  done
  spire-server entry create -socketPath "$sock" -parentID "$par" -spiffeID "$spiffe" "$@" >/dev/null
  echo "created $spiffe ($sels)"
done <"$desired"
