#!/bin/sh
# Keep the Flashpods secrets out of the Nix store and private:
#   flashpods-secrets.sh API_TOKEN_FILE SECRETS_FILE
# Creates the API token (32 random bytes as 64 hex digits) when it is
# missing or empty, written whole or not at all; forces both files to
# root:root 0600. A missing secrets file is reported, not invented.
set -eu
token=$1
secrets=$2
umask 077
if [ ! -s "$token" ]; then
  od -An -vtx1 -N32 /dev/urandom | tr -d ' \n' > "$token.tmp"
  mv "$token.tmp" "$token"
  echo "created the API token in $token"
fi
chown root:root "$token"
chmod 0600 "$token"
if [ -e "$secrets" ]; then
  chown root:root "$secrets"
  chmod 0600 "$secrets"
else
  echo "warning: $secrets is missing: the token service has no secrets to hand out" >&2
fi
