# shellcheck shell=sh
# status.sh DIR: the activation's status line ("" before the first one).
cat "$1/status" 2>/dev/null || true
