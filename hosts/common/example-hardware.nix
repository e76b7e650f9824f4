# A generic hardware configuration for workstation `name`, so that the fleet
# evaluates as shipped, with the placeholder that makes pantheros refuse to
# deploy it until hosts/<name>/hardware.nix is replaced by the output of
# `nixos-generate-config --show-hardware-config` on that machine.
name:
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
    file = "hosts/${name}/hardware.nix";
    description = "${name}'s hardware configuration (nixos-generate-config --show-hardware-config on ${name})";
  };
}
