# NixOS VM test: `pantheros deploy` from a deployer VM to a NixOS target
# (the fixture fleet's hetzner-vps), then `rollback --list`.
# `nix build .#checks.x86_64-linux.deploy` (needs KVM and nixpkgs).
# Not here yet: a configuration that breaks SSH and is undone by the target
# (the light and systemd hosts of the test world cover that), and building
# the fixture systems with nixpkgs' tools inside the VM (they use /bin/sh
# and /usr/bin, which a sandboxed NixOS build does not have).
{ pkgs, self }:
let
  pantheros = self.packages.${pkgs.stdenv.hostPlatform.system}.default;
  sshKeys = import (pkgs.path + "/nixos/tests/ssh-keys.nix") pkgs;
in
pkgs.testers.runNixOSTest {
  name = "pantheros-deploy";

  nodes.target =
    { ... }:
    {
      imports = [ self.nixosModules.deployment ];
      services.openssh.enable = true;
      users.users.root.openssh.authorizedKeys.keys = [ sshKeys.snakeOilPublicKey ];
      nix.settings.trusted-users = [ "root" ];
      virtualisation.writableStore = true;
    };

  nodes.deployer =
    { ... }:
    {
      environment.systemPackages = [ pantheros ];
      nix.settings.experimental-features = [
        "nix-command"
        "flakes"
      ];
      virtualisation.writableStore = true;
    };

  testScript = ''
    start_all()
    target.wait_for_unit("sshd.service")
    deployer.succeed("mkdir -p -m 700 /root/.ssh")
    deployer.succeed("cp ${sshKeys.snakeOilPrivateKey} /root/.ssh/id_ecdsa && chmod 600 /root/.ssh/id_ecdsa")
    deployer.succeed("ssh-keyscan target > /root/.ssh/known_hosts")
    deployer.succeed("ssh -o BatchMode=yes root@target true")
    # The fleet: the test fixture flake (no nixpkgs needed inside the VM).
    deployer.succeed("cp -r ${self}/tests/fixtures/fleet /root/fleet && cp ${self}/modules/lib/boot-watchdog.sh /root/fleet/ && chmod -R u+w /root/fleet")
    deployer.succeed("sed -i 's/targetHost = \"203.0.113.10\"/targetHost = \"target\"/' /root/fleet/flake.nix")
    deployer.succeed("cd /root/fleet && pantheros deploy hetzner-vps --yes")
    target.succeed("test -e /run/pantheros-fixture/generation")
    deployer.succeed("cd /root/fleet && pantheros rollback hetzner-vps --list")
  '';
}
