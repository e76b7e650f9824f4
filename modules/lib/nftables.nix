# The Flashpods host firewall, as an nftables table of its own.
#
# It only ever drops or rejects: the WireGuard port stays open to the
# internet, the API and rsync ports are reachable from the laptop's
# WireGuard address(es) over the WireGuard interface only, and containers
# cannot reach them at all. Containers come two ways: rootful ones from
# their networks (netavark's bridge, 10.88.0.0/16), rootless ones from the
# host itself, because their network helper (slirp4netns or pasta) opens
# each connection as an ordinary socket of the user who runs Podman; those
# are refused on the way out, by the user's uid, when they are bound for
# one of the host's own addresses. Container egress is left to Podman
# (netavark keeps its own table; the helper's traffic is the user's). Because it is a separate table
# with `policy accept`, it coexists with the NixOS firewall (`nixos-fw`,
# which still has to let the ports in) and with Podman's tables, and a
# reload replaces this table alone.
{
  tableName ? "flashpods",
  wireguardInterface ? "wg0",
  wireguardPort ? 51820,
  # WireGuard addresses of the laptop peer(s) allowed to use the API and rsync.
  laptopAddresses,
  apiPort ? 8080,
  rsyncPort ? 873,
  # Address ranges of the container networks (Podman's default is 10.88.0.0/16).
  containerNetworks ? [ "10.88.0.0/16" ],
  # Users (numeric uids) that run rootless Podman: their sockets to the
  # host's own API and rsync ports are refused.
  containerUsers ? [ ],
}:
let
  set = xs: "{ ${builtins.concatStringsSep ", " (map toString xs)} }";
  ports = set [
    apiPort
    rsyncPort
  ];
  rules =
    [ ''udp dport ${toString wireguardPort} accept comment "WireGuard, from anywhere"'' ]
    ++ (
      if containerNetworks == [ ] then
        [ ]
      else
        [
          ''ip saddr ${set containerNetworks} tcp dport ${ports} counter reject with tcp reset comment "containers may not reach the API or rsync"''
        ]
    )
    ++ (
      if laptopAddresses == [ ] then
        [ ]
      else
        [
          ''iifname "${wireguardInterface}" ip saddr ${set laptopAddresses} tcp dport ${ports} counter accept comment "the laptop, over WireGuard"''
        ]
    )
    ++ [ ''tcp dport ${ports} counter drop comment "the API and rsync: nobody else"'' ];
  outputRules = map (
    uid:
    ''meta skuid ${toString uid} fib daddr type local tcp dport ${ports} counter reject with tcp reset comment "rootless containers (their network helper runs as uid ${toString uid}) may not reach the API or rsync"''
  ) containerUsers;
  chain =
    name: hook: rules:
    "chain ${name} {\n"
    + "  type filter hook ${hook} priority filter - 1; policy accept;\n"
    + builtins.concatStringsSep "" (map (r: "  ${r}\n") rules)
    + "}\n";
in
rec {
  inherit tableName;

  # The body of the table (for networking.nftables.tables.<name>.content).
  content =
    chain "input" "input" rules + (if outputRules == [ ] then "" else chain "output" "output" outputRules);

  # A file `nft -f` loads again and again: it replaces this table and
  # leaves every other table (nixos-fw, netavark) alone.
  ruleset = ''
    table inet ${tableName}
    delete table inet ${tableName}
    table inet ${tableName} {
    ${content}}
  '';
}
