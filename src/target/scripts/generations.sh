# shellcheck shell=sh
# generations.sh PROFILE SIZES(yes|no): the profile's generations as GEN lines.
set -u
profile=$1 sizes=$2
if [ ! -e "$profile" ] && [ ! -L "$profile" ]; then
  echo "NO-PROFILE"
  exit "$EXIT_NO_PROFILE"
fi
list_generations "$profile" "$sizes"
