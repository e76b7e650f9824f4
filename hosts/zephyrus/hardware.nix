# Replace this whole file with the output of
# `nixos-generate-config --show-hardware-config` on zephyrus. Until then it is
# an example, and pantheros refuses to deploy zephyrus.
import ../common/example-hardware.nix "zephyrus"
