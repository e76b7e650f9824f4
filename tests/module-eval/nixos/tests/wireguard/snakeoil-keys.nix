# Stand-in for nixpkgs' nixos/tests/wireguard/snakeoil-keys.nix: the same
# attribute names (peer0, peer1; privateKey, publicKey), not its keys.
{
  peer0 = {
    privateKey = "stand-in-peer0-private-key-000000000000000=";
    publicKey = "stand-in-peer0-public-key-0000000000000000=";
  };
  peer1 = {
    privateKey = "stand-in-peer1-private-key-111111111111111=";
    publicKey = "stand-in-peer1-public-key-1111111111111111=";
  };
}
