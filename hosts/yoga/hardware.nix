# Replace this whole file with the output of
# `nixos-generate-config --show-hardware-config` on yoga. Until then it is
# an example, and pantheros refuses to deploy yoga.
import ../common/example-hardware.nix "yoga"
