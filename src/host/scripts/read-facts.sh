# shellcheck shell=sh
# read-facts.sh NAME COMMAND [NAME COMMAND …]: the facts a host's
# configuration asks pantheros to read back after a deploy
# (pantheros.deployment.recordFacts). Each COMMAND runs with sh as root; its
# output (at most 4 KiB, surrounding blank space removed by the deployer)
# follows a "== NAME" line. A command that fails prints nothing.
set -u
while [ $# -ge 2 ]; do
  echo "== $1"
  sh -c "$2" 2>/dev/null | head -c 4096
  echo
  shift 2
done
