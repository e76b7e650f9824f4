# A generic hardware configuration, so that the fleet evaluates as shipped.
# Replace this whole file with the output of
# `nixos-generate-config --show-hardware-config` on zephyrus; until then pantheros
# refuses to deploy zephyrus (the placeholder below goes with this file).
{ ... }:
{
  fileSystems."/" = {
    device = "/dev/disk/by-label/nixos";
    fsType = "ext4";
  };
  fileSystems."/boot" = {
    device = "/dev/disk/by-label/boot";
    fsType = "vfat";
  };

  pantheros.deployment.placeholders.hardware = {
    filled = false;
    file = "hosts/zephyrus/hardware.nix";
    description = "zephyrus's hardware configuration (nixos-generate-config --show-hardware-config on zephyrus)";
  };
}
