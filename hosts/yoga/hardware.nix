# A generic hardware configuration, so that the fleet evaluates as shipped.
# Replace this whole file with the output of
# `nixos-generate-config --show-hardware-config` on yoga; until then pantheros
# refuses to deploy yoga (the placeholder below goes with this file).
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
    file = "hosts/yoga/hardware.nix";
    description = "yoga's hardware configuration (nixos-generate-config --show-hardware-config on yoga)";
  };
}
