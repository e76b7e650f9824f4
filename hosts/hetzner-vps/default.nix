# The Flashpods job host on Hetzner Cloud.
{ lib, modulesPath, ... }:
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
    healthChecks.services = [ "sshd.service" ];
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
}
