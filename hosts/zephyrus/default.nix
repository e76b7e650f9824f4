# Workstation `zephyrus`.
{
  imports = [
    (import ../common/workstation.nix "zephyrus")
    ./hardware.nix
  ];
}
