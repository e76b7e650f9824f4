# Units that nixpkgs' own modules generate for a host. The stand-ins in
# ./options.nix declare options only, so these never appear in
# config.systemd.*; this is the mapping, as data, from what a host enables
# to the units nixpkgs then defines, each with the file that defines it.
# Used to check that every unit a health check, an ordering or a VM test
# names exists on the host.
config:
let
  inherit (config) services networking virtualisation;
  wg = networking.wireguard;
  on = cond: units: if cond then units else [ ];
in
# systemd itself (nixos/modules/system/boot/systemd.nix: upstreamSystemUnits)
[
  "basic.target"
  "default.target"
  "getty.target"
  "local-fs.target"
  "multi-user.target"
  "network.target"
  "network-online.target"
  "network-pre.target"
  "nss-lookup.target"
  "paths.target"
  "remote-fs.target"
  "shutdown.target"
  "sockets.target"
  "sysinit.target"
  "time-sync.target"
  "timers.target"
  "systemd-tmpfiles-setup.service"
  "systemd-user-sessions.service"
  "dbus.service"
]
# nixos/modules/services/networking/ssh/sshd.nix
++ on services.openssh.enable [ "sshd.service" ]
# nixos/modules/system/boot/networkd.nix
++ on config.systemd.network.enable [
  "systemd-networkd.service"
  "systemd-networkd-wait-online.service"
]
# nixos/modules/services/networking/wireguard.nix (scripted backend: one
# service per interface); wireguard-networkd.nix makes none
++ on (wg.enable && !wg.useNetworkd) (map (i: "wireguard-${i}.service") (builtins.attrNames wg.interfaces))
# nixos/modules/services/networking/nftables.nix
++ on networking.nftables.enable [ "nftables.service" ]
# nixos/modules/services/networking/firewall-iptables.nix / firewall-nftables.nix
++ on networking.firewall.enable [ "firewall.service" ]
# nixos/modules/services/network-filesystems/rsyncd.nix
++ on services.rsyncd.enable [ (if services.rsyncd.socketActivated then "rsync.socket" else "rsync.service") ]
# nixos/modules/services/security/spire/server.nix, agent.nix
++ on services.spire.server.enable [ "spire-server.service" ]
++ on services.spire.agent.enable [ "spire-agent.service" ]
# nixos/modules/services/networking/tailscale.nix
++ on services.tailscale.enable [ "tailscaled.service" ]
# nixos/modules/virtualisation/qemu-guest-agent.nix
++ on services.qemuGuest.enable [ "qemu-guest-agent.service" ]
# nixos/modules/virtualisation/podman/default.nix (from the podman package)
++ on virtualisation.podman.enable [
  "podman.service"
  "podman.socket"
]
# nixos/modules/services/networking/networkmanager.nix
++ on networking.networkmanager.enable [
  "NetworkManager.service"
  "NetworkManager-wait-online.service"
]
