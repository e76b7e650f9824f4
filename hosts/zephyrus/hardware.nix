# Replace with the output of `nixos-generate-config --show-hardware-config`
# on zephyrus. Until then, building this host fails with a clear message.
{ ... }:
{
  fileSystems."/" = throw "hosts/zephyrus/hardware.nix: paste zephyrus's hardware configuration (nixos-generate-config --show-hardware-config)";
}
