# Workstation `yoga`.
{
  imports = [
    (import ../common/workstation.nix "yoga")
    ./hardware.nix
  ];
}
