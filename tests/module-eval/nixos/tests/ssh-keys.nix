# Stand-in for nixpkgs' nixos/tests/ssh-keys.nix (test-only keys shared by
# the VM tests): the same attribute names and kinds, not its keys.
pkgs: {
  snakeOilPrivateKey = pkgs.writeText "privkey.snakeoil" "stand-in private key (never used: the VM test is evaluated, not run)\n";
  snakeOilPublicKey = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYstandin snakeoil";
}
