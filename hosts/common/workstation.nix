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

  # The server's WireGuard key and address are the server's facts: they
  # are there once `pantheros up ${net.server.host}` has run.
  pantheros.deployment.placeholders.serverWireguardKey = {
    filled = !(net.isExample net.server.publicKey);
    fromFact = "${net.server.host}.wireguardPublicKey";
    file = "hosts/${net.server.host}/facts.json";
    description = "${net.server.host}'s WireGuard public key, read back from it after its first deploy";
  };

  pantheros.deployment.placeholders.serverEndpoint = {
    filled = net.server.endpointKnown;
    fromFact = "${net.server.host}.ipv4";
    file = "hosts/${net.server.host}/facts.json";
    description = "${net.server.host}'s public IPv4 address (its WireGuard endpoint), recorded when the server is created";
  };

  pantheros.deployment = {
    targetHost = name;
    # This workstation's own WireGuard public key is recorded here after its
    # first deploy, where the server reads it.
    factsFile = ./.. + "/${name}/facts.json";
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
