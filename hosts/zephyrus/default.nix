# Workstation `zephyrus`: deployed locally when you run pantheros on it.
{ lib, ... }:
let
  net = import ../flashpods-network.nix;
in
{
  imports = [ ./hardware.nix ];

  nixpkgs.hostPlatform = "x86_64-linux";

  pantheros.deployment = {
    targetHost = "zephyrus";
    tags = [
      "workstation"
      "laptop"
    ];
  };

  boot.loader.systemd-boot.enable = true;
  boot.loader.efi.canTouchEfiVariables = true;
  networking.networkmanager.enable = true;

  # A WireGuard peer of the Flashpods server.
  pantheros.wireguard = {
    enable = true;
    role = "peer";
    inherit (net.peers.zephyrus) address;
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
