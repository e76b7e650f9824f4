# Pure renderers for the text our modules generate. Builtins only: no
# nixpkgs, so the tests render them with plain `nix eval` and feed the
# result to the real daemons (nft, rsync, wg, sshd, an HCL parser).
{
  nftables = import ./nftables.nix;
  rsyncd = import ./rsyncd.nix;
  spire = import ./spire.nix;
  wireguard = import ./wireguard.nix;
  sshd = import ./sshd.nix;
  hcl = import ./hcl.nix;
  ini = import ./ini.nix;
  facts = import ./facts.nix;
}
