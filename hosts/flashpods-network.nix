# The Flashpods WireGuard network of the example fleet, as plain data: the
# server (hetzner-vps) and its peers (the workstations). The NixOS hosts
# read it, and the tests render the firewall, rsyncd.conf and WireGuard
# configs from it with plain `nix eval`. Public keys are per machine: set
# them after generating the keys (`wg pubkey < /var/lib/wireguard/wg0.key`).
{
  prefixLength = 24;
  listenPort = 51820;
  server = {
    host = "hetzner-vps";
    address = "10.0.0.1";
    endpoint = "hetzner-vps.example.org:51820";
    publicKey = throw "hosts/flashpods-network.nix: set server.publicKey to hetzner-vps's WireGuard public key";
  };
  peers = {
    yoga = {
      address = "10.0.0.2";
      publicKey = throw "hosts/flashpods-network.nix: set peers.yoga.publicKey to yoga's WireGuard public key";
    };
    zephyrus = {
      address = "10.0.0.3";
      publicKey = throw "hosts/flashpods-network.nix: set peers.zephyrus.publicKey to zephyrus's WireGuard public key";
    };
  };
  # The peer that may use the Flashpods API and rsync (the checklist's "laptop").
  laptop = "yoga";
  # Podman's default network on the server.
  containerNetworks = [ "10.88.0.0/16" ];
}
