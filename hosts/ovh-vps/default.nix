# A second server, at OVH.
{ modulesPath, ... }:
{
  imports = [
    (modulesPath + "/profiles/qemu-guest.nix")
    ../common/vps-disk.nix
  ];

  nixpkgs.hostPlatform = "x86_64-linux";

  pantheros.deployment = {
    targetHost = "ovh-vps";
    provider = "ovh";
    tags = [ "server" ];
    healthChecks.services = [ "sshd.service" ];
  };

  boot.loader.grub = {
    efiSupport = true;
    efiInstallAsRemovable = true;
  };
  networking.useDHCP = true;
}
