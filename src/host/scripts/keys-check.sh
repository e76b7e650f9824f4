# shellcheck shell=sh
# keys-check.sh USER GROUP [USER GROUP ...]: before any key is written, check
# that every key's owner and group exist on this host. Prints "MISSING user
# NAME" / "MISSING group NAME" for each one that does not, and exits
# EXIT_KEY_OWNER when there is any.
set -eu
missing=0
while [ "$#" -ge 2 ]; do
  user=$1 group=$2
  shift 2
  if ! id -u "$user" >/dev/null 2>&1; then
    echo "MISSING user $user"
    missing=1
  fi
  if command -v getent >/dev/null 2>&1; then
    getent group "$group" >/dev/null 2>&1 || { echo "MISSING group $group"; missing=1; }
  elif ! grep -q "^$group:" /etc/group; then
    echo "MISSING group $group"
    missing=1
  fi
done
if [ "$missing" = 1 ]; then
  exit "$EXIT_KEY_OWNER"
fi
