# Workstation `yoga`: deployed locally when you run pantheros on it.
{ lib, ... }:
{
  imports = [ ./hardware.nix ];

  nixpkgs.hostPlatform = "x86_64-linux";

  pantheros.deployment = {
    targetHost = "yoga";
    tags = [
      "workstation"
      "laptop"
    ];
  };

  boot.loader.systemd-boot.enable = true;
  boot.loader.efi.canTouchEfiVariables = true;
  networking.networkmanager.enable = true;
}
