# shellcheck shell=sh
# cache.sh MODE ...: a deploy's binary cache, on the host.
#
#   trusts KEY           "== trusts" then yes or no: whether this host's Nix
#                        trusts KEY (its trusted-public-keys), so that paths
#                        signed with it substitute here
#   fetch URL TOPLEVEL   substitute TOPLEVEL's closure from the cache at URL
#                        (an extra substituter for this command only; the
#                        signatures are checked against the host's own keys)
set -u
PATH="$PATH:/run/current-system/sw/bin:/nix/var/nix/profiles/default/bin"
mode=$1
shift
case "$mode" in
trusts)
  key=$1
  keys=$(nix --extra-experimental-features nix-command config show trusted-public-keys 2>/dev/null ||
    nix --extra-experimental-features nix-command show-config 2>/dev/null | sed -n 's/^trusted-public-keys = //p')
  echo "== trusts"
  case " $keys " in
  *" $key "*) echo yes ;;
  *) echo no ;;
  esac
  ;;
fetch)
  url=$1 top=$2
  nix-store --realise "$top" --option extra-substituters "$url" >/dev/null
  ;;
*)
  echo "unknown mode $mode" >&2
  exit 2
  ;;
esac
