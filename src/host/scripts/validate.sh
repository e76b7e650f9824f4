# shellcheck shell=sh
# validate.sh CHECK ARGS…: one host-side fact for `pantheros validate`, as
# tagged lines the deployer parses and judges (this script only looks).
# Not `set -e`: a probe that fails is a fact to report, not an error.
set -u
check=$1
shift

# The probe a container runs (busybox or alpine sh): TIMEOUT then
# NAME ADDRESS PORT triples; one "PROBE NAME open|refused|unanswered …" each.
# shellcheck disable=SC2016 # the container's shell expands it, not this one
container_probe='t=$1; shift
while [ $# -ge 3 ]; do
  n=$1 a=$2 p=$3
  shift 3
  if out=$(nc -w "$t" "$a" "$p" </dev/null 2>&1); then
    echo "PROBE $n open"
  else
    case $out in
    *refused*) echo "PROBE $n refused" ;;
    *) echo "PROBE $n unanswered $out" ;;
    esac
  fi
done'

# The fetches a job's container runs (sh): BIN AGENT_SOCKET [AUDIENCE];
# each fetch's output, then a marker line with its exit status.
# shellcheck disable=SC2016 # the container's shell expands it, not this one
job_fetch='b=$1 a=$2 aud=$3
"$b/spire-agent" api fetch x509 -socketPath "$a" 2>&1
echo "@@x509 $?"
if [ -n "$aud" ]; then
  "$b/spire-agent" api fetch jwt -audience "$aud" -socketPath "$a" 2>&1
  echo "@@jwt $?"
fi'

# Run a command and print its exit status and its output, tagged.
tagged() {
  t_out=$("$@" 2>&1)
  t_rc=$?
  echo "EXIT $t_rc"
  printf '%s\n' "$t_out" | sed 's/^/OUT /'
}

case "$check" in
handshakes)
  # handshakes IFACE: the host's clock, then each peer's last handshake
  # (seconds since the epoch; 0 = never).
  echo "NOW $(date +%s)"
  if ! out=$(wg show "$1" latest-handshakes 2>&1); then
    echo "ERROR $out"
    exit 0
  fi
  printf '%s\n' "$out" | while read -r key at; do
    [ -n "$key" ] && echo "PEER $key $at"
  done
  ;;
listen)
  # listen PORT: the local address of every TCP socket listening on PORT.
  if ! out=$(ss -Hltn "sport = :$1" 2>&1); then
    echo "ERROR $out"
    exit 0
  fi
  printf '%s\n' "$out" | while read -r _ _ _ local _; do
    [ -n "$local" ] && echo "LISTEN $local"
  done
  ;;
rsyncd)
  # rsyncd: the rsync daemon of this host's network namespace (pid, config
  # file), then its config file's lines. Behind the firewall no address but
  # a laptop's reaches rsyncd, so its own `hosts allow` is read, not probed.
  self_ns=$(readlink /proc/self/ns/net)
  for p in /proc/[0-9]*; do
    [ "$(readlink "$p/ns/net" 2>/dev/null)" = "$self_ns" ] || continue
    cmd=$(tr '\0' ' ' <"$p/cmdline" 2>/dev/null) || continue
    case "$cmd" in
    *rsync*--daemon*) ;;
    *) continue ;;
    esac
    conf=/etc/rsyncd.conf
    for a in $cmd; do
      case $a in
      --config=*) conf=${a#--config=} ;;
      esac
    done
    echo "DAEMON ${p#/proc/} $conf"
    sed 's/^/OUT /' "$conf"
    exit 0
  done
  echo "ERROR no rsync daemon runs on the host"
  ;;
container)
  # container SOCKET IMAGE LABEL TIMEOUT [NAME ADDRESS PORT]…: one container
  # with LABEL, started through the flashpods user's Podman socket, tries
  # each address.
  socket=$1 image=$2 label=$3 t=$4
  shift 4
  tagged podman --remote --url "unix://$socket" run --rm --pull=missing \
    --label "$label" "$image" sh -c "$container_probe" probe "$t" "$@"
  ;;
tailscale)
  # tailscale: the host's own status line (exit 0 once it is joined).
  tagged tailscale status --peers=false
  ;;
cgroup)
  # cgroup SOCKET IMAGE LABEL: one container with LABEL, started through
  # the flashpods user's Podman socket; its id, its pid and the cgroup
  # lines of that pid as the host sees them (what SPIRE's docker attestor
  # reads), then the container is removed.
  socket=$1 image=$2 label=$3
  if ! out=$(podman --remote --url "unix://$socket" run -d --rm --pull=missing \
    --label "$label" "$image" sleep 120 2>&1); then
    echo "EXIT 1"
    printf '%s\n' "$out" | tail -n 5 | sed 's/^/OUT /'
    exit 0
  fi
  id=$(printf '%s\n' "$out" | tail -n 1)
  echo "ID $id"
  pid=$(podman --remote --url "unix://$socket" inspect --format '{{.State.Pid}}' "$id" 2>&1)
  echo "PID $pid"
  if [ -r "/proc/$pid/cgroup" ]; then
    sed 's/^/CGROUP /' "/proc/$pid/cgroup"
  fi
  podman --remote --url "unix://$socket" rm -f -t 0 "$id" >/dev/null 2>&1
  echo "EXIT 0"
  ;;
spire)
  # spire BIN SERVER_SOCKET AGENT_SOCKET: both healthchecks, the attested
  # agents and the registration entries.
  bin=$1 server=$2 agent=$3
  echo "SECTION server-health"
  tagged "$bin/spire-server" healthcheck -socketPath "$server"
  echo "SECTION agent-health"
  tagged "$bin/spire-agent" healthcheck -socketPath "$agent"
  echo "SECTION agents"
  tagged "$bin/spire-server" agent list -socketPath "$server" -output json
  echo "SECTION entries"
  tagged "$bin/spire-server" entry show -socketPath "$server" -output json
  ;;
job)
  # job SOCKET IMAGE LABEL BIN AGENT_SOCKET [TOKEN_SOCKET AUDIENCE]: one
  # container with LABEL (started through the flashpods user's Podman
  # socket, the agent socket and the store mounted for the binary) asks the
  # agent for its X.509 SVID and, with a token service, a JWT-SVID for
  # AUDIENCE, which the host then presents to the token service.
  # Section x509: the fetch's exit status and output.
  # Section token: the JWT-SVID's ID, the HTTP status and the names of the
  # tokens returned: never a token's value, nor the JWT (which stays in this
  # shell: printf is a builtin, curl reads the header on stdin).
  socket=$1 image=$2 label=$3 bin=$4 agent=$5 tokens=${6:-} audience=${7:-}
  out=$(podman --remote --url "unix://$socket" run --rm --pull=missing \
    --label "$label" -v "$agent:$agent:ro" -v /nix/store:/nix/store:ro \
    "$image" sh -c "$job_fetch" job "$bin" "$agent" "$audience" 2>&1)
  rc=$?
  x509_rc=$(printf '%s\n' "$out" | sed -n 's/^@@x509 //p')
  echo "SECTION x509"
  echo "EXIT ${x509_rc:-$rc}"
  printf '%s\n' "$out" | sed '/^@@x509 /,$d' | sed 's/^/OUT /'
  [ -n "$tokens" ] || exit 0
  echo "SECTION token"
  if [ -n "$x509_rc" ]; then
    fetched=$(printf '%s\n' "$out" | sed '1,/^@@x509 /d; /^@@jwt /,$d')
  else
    fetched=$out # podman itself failed: its own output
  fi
  jwt_rc=$(printf '%s\n' "$out" | sed -n 's/^@@jwt //p')
  if [ "${jwt_rc:-1}" -ne 0 ]; then
    echo "EXIT ${jwt_rc:-$rc}"
    printf '%s\n' "$fetched" | tail -n 5 | sed 's/^/OUT /'
    exit 0
  fi
  id=$(printf '%s\n' "$fetched" | sed -n 's/^token(\(.*\)):$/\1/p' | head -n 1)
  jwt=$(printf '%s\n' "$fetched" | sed -n '/^token(/{n;s/^[[:space:]]*//;p;q;}')
  if [ -z "$jwt" ]; then
    echo "ERROR the agent printed no JWT-SVID"
    exit 0
  fi
  echo "SVID $id"
  body=$(printf 'Authorization: Bearer %s\n' "$jwt" |
    curl -sS --max-time 10 --unix-socket "$tokens" -H @- -w '\nHTTP %{http_code}' http://localhost/tokens 2>&1)
  printf '%s\n' "$body" | sed -n 's/^HTTP \([0-9]*\)$/STATUS \1/p' | tail -n 1
  printf '%s\n' "$body" | grep '^curl: ' | sed 's/^/OUT /'
  printf '%s\n' "$body" | sed '$d' | grep -o '"[A-Za-z0-9_]*"[[:space:]]*:' | tr -d '": ' | sed 's/^/KEY /'
  ;;
*)
  echo "ERROR unknown check $check"
  exit 2
  ;;
esac
