# The Flashpods WireGuard network of the example fleet, as plain data: the
# server (hetzner-vps) and its peers (the workstations). The NixOS hosts
# read it, and the tests render the firewall, rsyncd.conf and WireGuard
# configs from it with plain `nix eval`. What the machines decide comes from
# their facts files (hosts/<host>/facts.json, written by pantheros): each
# machine makes its WireGuard key at its first deploy and pantheros records
# the public half there; the server's endpoint is its recorded IPv4 address.
# Until then the server's key is an example (starting with EXAMPLE: the
# workstations wait for it) and a workstation's key is null (the server
# leaves that peer out until it is known).
let
  factsOf = host: import ../modules/lib/facts.nix (./. + "/${host}/facts.json");
  serverFacts = factsOf "hetzner-vps";
in
{
  isExample = key: key == null || builtins.substring 0 7 key == "EXAMPLE";
  prefixLength = 24;
  listenPort = 51820;
  server = {
    host = "hetzner-vps";
    address = "10.0.0.1";
    # Until `pantheros up hetzner-vps` records its address, an example
    # (the workstations' serverEndpoint placeholder waits for it).
    endpointKnown = serverFacts ? ipv4;
    endpoint =
      if serverFacts ? ipv4 then "${serverFacts.ipv4}:51820" else "hetzner-vps.example.org:51820";
    publicKey = serverFacts.wireguardPublicKey or "EXAMPLEserverPublicKeyReplaceMe000000000000=";
  };
  peers = {
    yoga = {
      address = "10.0.0.2";
      publicKey = (factsOf "yoga").wireguardPublicKey or null;
    };
    zephyrus = {
      address = "10.0.0.3";
      publicKey = (factsOf "zephyrus").wireguardPublicKey or null;
    };
  };
  # The peer that may use the Flashpods API and rsync (the checklist's "laptop").
  laptop = "yoga";
  # Podman's default network on the server.
  containerNetworks = [ "10.88.0.0/16" ];
}
