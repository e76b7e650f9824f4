# The Flashpods WireGuard network of the example fleet, as plain data: the
# server (hetzner-vps) and its peers (the workstations). The NixOS hosts
# read it, and the tests render the firewall, rsyncd.conf and WireGuard
# configs from it with plain `nix eval`. Public keys are per machine: the
# ones below are examples (they start with EXAMPLE); set each after its
# machine generated its key (`wg pubkey < /var/lib/wireguard/wg0.key`).
# pantheros refuses to deploy a host that relies on an example key.
{
  isExample = key: builtins.substring 0 7 key == "EXAMPLE";
  prefixLength = 24;
  listenPort = 51820;
  server = {
    host = "hetzner-vps";
    address = "10.0.0.1";
    endpoint = "hetzner-vps.example.org:51820";
    publicKey = "EXAMPLEserverPublicKeyReplaceMe000000000000=";
  };
  peers = {
    yoga = {
      address = "10.0.0.2";
      publicKey = "EXAMPLEyogaPublicKeyReplaceMe00000000000000=";
    };
    zephyrus = {
      address = "10.0.0.3";
      publicKey = "EXAMPLEzephyrusPublicKeyReplaceMe0000000000=";
    };
  };
  # The peer that may use the Flashpods API and rsync (the checklist's "laptop").
  laptop = "yoga";
  # Podman's default network on the server.
  containerNetworks = [ "10.88.0.0/16" ];
}
