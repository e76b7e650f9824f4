# Replace with the output of `nixos-generate-config --show-hardware-config`
# on yoga. Until then, building this host fails with a clear message.
{ ... }:
{
  fileSystems."/" = throw "hosts/yoga/hardware.nix: paste yoga's hardware configuration (nixos-generate-config --show-hardware-config)";
}
