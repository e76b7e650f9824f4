# A wg(8) configuration (`wg setconf`), e.g. for a peer that is not NixOS.
# Without privateKey the key is set separately (`wg set IF private-key FILE`),
# so that it never has to be part of generated text.
{
  privateKey ? null,
  listenPort ? null,
  peers ? [ ],
}:
let
  opt = k: v: if v == null then "" else "${k} = ${toString v}\n";
  peer =
    p:
    "\n[Peer]\n"
    + "PublicKey = ${p.publicKey}\n"
    + "AllowedIPs = ${builtins.concatStringsSep ", " p.allowedIPs}\n"
    + opt "Endpoint" (p.endpoint or null)
    + opt "PersistentKeepalive" (p.persistentKeepalive or null);
in
"[Interface]\n" + opt "PrivateKey" privateKey + opt "ListenPort" listenPort + builtins.concatStringsSep "" (map peer peers)
