# A workstation of the fleet (deployed locally when you run pantheros on
# it) and a WireGuard peer of the Flashpods server. `name` is its host name.
name:
{ lib, ... }:
let
  net = import ../flashpods-network.nix;
in
{
  imports = [ ../../modules/flashpods/wireguard.nix ];

  nixpkgs.hostPlatform = "x86_64-linux";

  pantheros.deployment.placeholders.serverWireguardKey = {
    filled = !(net.isExample net.server.publicKey);
    file = "hosts/flashpods-network.nix";
    description = "server.publicKey: ${net.server.host}'s WireGuard public key (wg pubkey < /var/lib/wireguard/wg0.key there)";
  };

  pantheros.deployment = {
    targetHost = name;
    tags = [
      "workstation"
      "laptop"
    ];
  };

  boot.loader.systemd-boot.enable = true;
  boot.loader.efi.canTouchEfiVariables = true;
  networking.networkmanager.enable = true;

  services.flashpods.wireguard = {
    enable = true;
    role = "peer";
    inherit (net.peers.${name}) address;
    inherit (net) prefixLength;
    peers = [
      {
        inherit (net.server) publicKey endpoint;
        allowedIPs = [ "${net.server.address}/32" ];
        persistentKeepalive = 25;
      }
    ];
  };
}
