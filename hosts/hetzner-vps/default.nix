# The Flashpods job host on Hetzner Cloud.
{ lib, modulesPath, ... }:
let
  net = import ../flashpods-network.nix;
in
{
  imports = [
    (modulesPath + "/profiles/qemu-guest.nix")
    ./disk.nix
  ];

  nixpkgs.hostPlatform = "x86_64-linux";

  pantheros.deployment = {
    targetHost = "hetzner-vps";
    provider = "hetzner";
    tags = [
      "server"
      "hetzner"
    ];
    hetzner = {
      serverType = "cx23";
      location = "nbg1";
      image = "ubuntu-24.04";
      labels.role = "flashpods";
    };
    healthChecks.services = [
      "sshd.service"
      "wireguard-wg0.service"
      "flashpods-podman.service"
      "rsync.service"
      "spire-server.service"
      "spire-agent.service"
    ];
  };

  boot.loader.grub = {
    efiSupport = true;
    efiInstallAsRemovable = true;
  };
  services.qemuGuest.enable = true;

  networking.useNetworkd = true;
  networking.useDHCP = false;
  systemd.network.networks."10-uplink" = {
    matchConfig.Name = "en*";
    networkConfig.DHCP = "ipv4";
    # Hetzner gives every server a routed /64 but no DHCPv6: set the
    # address the API reports for this server (see docs/hetzner.md).
    address = [ (throw "hosts/hetzner-vps: set the server's IPv6 address (e.g. \"2a01:4f8:c0c:1234::1/64\")") ];
    gateway = [ "fe80::1" ];
  };

  services.tailscale.enable = true;

  # The Flashpods job host: WireGuard server, firewall, rootless Podman,
  # rsync, SPIRE, secrets. Set api.package / tokenService.package to run them.
  services.flashpods = {
    enable = true;
    wireguard.laptops = lib.filterAttrs (name: _: name == net.laptop) net.peers;
    inherit (net) containerNetworks;
  };
  pantheros.wireguard = {
    inherit (net.server) address;
    inherit (net) prefixLength listenPort;
  };
}
