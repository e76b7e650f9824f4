# shellcheck shell=sh
# health.sh SYSTEMD(yes|no) TIMEOUT [--baseline UNIT...] [--services UNIT...] [--http URL...] [--commands CMD...]:
# one round of health checks (health_round in common.sh); exits 1 when a
# check failed, each problem printed.
set -u
health_round "$@"
