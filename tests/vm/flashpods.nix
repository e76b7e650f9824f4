# NixOS VM test: the Flashpods host and a laptop on one network.
# `nix build .#checks.x86_64-linux.flashpods` (needs KVM and nixpkgs).
{ pkgs, self }:
let
  keys = import (pkgs.path + "/nixos/tests/wireguard/snakeoil-keys.nix");
  # A stand-in API for the test: answers /health on the WireGuard address.
  # It serves a directory from the store: the unit runs with
  # ProtectSystem=strict, so it may not create one under /tmp.
  www = pkgs.writeTextDir "health" "ok";
  fakeApi = pkgs.writeShellApplication {
    name = "flashpods-api";
    runtimeInputs = [ pkgs.python3 ];
    text = ''
      host=''${FLASHPODS_LISTEN%:*}
      port=''${FLASHPODS_LISTEN##*:}
      exec python3 -m http.server "$port" --bind "$host" --directory ${www}
    '';
  };
in
pkgs.testers.runNixOSTest {
  name = "pantheros-flashpods";

  nodes.server =
    { ... }:
    {
      imports = [ self.nixosModules.flashpods ];
      environment.etc."wireguard/wg0.key" = {
        text = keys.peer0.privateKey;
        mode = "0400";
      };
      services.flashpods = {
        enable = true;
        wireguard = {
          privateKeyFile = "/etc/wireguard/wg0.key";
          generatePrivateKey = false;
          laptops.laptop = {
            address = "10.0.0.2";
            inherit (keys.peer1) publicKey;
          };
        };
        api = {
          package = fakeApi;
          schema = pkgs.writeText "schema.sql" "CREATE TABLE jobs (id INTEGER PRIMARY KEY, state TEXT);";
        };
      };
      virtualisation.memorySize = 2048;
    };

  nodes.laptop =
    { ... }:
    {
      imports = [ self.nixosModules.flashpods-wireguard ];
      environment.etc."wireguard/wg0.key" = {
        text = keys.peer1.privateKey;
        mode = "0400";
      };
      environment.systemPackages = [
        pkgs.curl
        pkgs.rsync
      ];
      services.flashpods.wireguard = {
        enable = true;
        role = "peer";
        address = "10.0.0.2";
        privateKeyFile = "/etc/wireguard/wg0.key";
        generatePrivateKey = false;
        peers = [
          {
            inherit (keys.peer0) publicKey;
            allowedIPs = [ "10.0.0.1/32" ];
            endpoint = "server:51820";
            persistentKeepalive = 25;
          }
        ];
      };
    };

  testScript = ''
    start_all()
    server.wait_for_unit("wireguard-wg0.service")
    laptop.wait_for_unit("wireguard-wg0.service")

    with subtest("WireGuard: laptop reaches the server"):
        laptop.wait_until_succeeds("ping -c1 -W1 10.0.0.1", timeout=60)

    with subtest("directories and secrets"):
        server.wait_for_unit("flashpods-secrets.service")
        server.succeed("test $(stat -c %a /etc/flashpods) = 700")
        server.succeed("test $(stat -c %a /run/flashpods) = 750")
        server.succeed("test $(stat -c %U /var/lib/flashpods/artifacts) = flashpods")
        server.succeed("test $(stat -c %a /etc/flashpods/api-token) = 600")
        server.succeed("test $(wc -c < /etc/flashpods/api-token) = 64")

    with subtest("the API: laptop over WireGuard only"):
        server.wait_for_unit("flashpods-api.service")
        server.succeed("test -s /var/lib/flashpods/db/flashpods.db")
        laptop.wait_until_succeeds("curl -sf http://10.0.0.1:8080/health", timeout=60)
        laptop.fail("curl -sf -m 3 http://server:8080/health")

    with subtest("rsync uploads from the laptop"):
        server.wait_for_unit("rsync.service")
        laptop.succeed("echo job > /tmp/job && rsync /tmp/job rsync://10.0.0.1/uploads/")
        server.succeed("test -e /tmp/flashpods/uploads/job")

    with subtest("firewall tables"):
        server.succeed("nft list table inet flashpods")
        server.succeed("systemctl reload nftables || systemctl restart nftables")
        server.succeed("nft list table inet flashpods")

    with subtest("rootless Podman socket"):
        server.wait_for_unit("flashpods-podman.service")
        server.wait_for_open_unix_socket("/run/flashpods/podman.sock")

    with subtest("SPIRE: agent attested, entries reconciled without duplicates"):
        server.wait_for_unit("spire-agent.service")
        server.wait_for_unit("pantheros-spire-entries.service")
        server.succeed("systemctl restart pantheros-spire-entries.service")
        out = server.succeed("spire-server entry show -socketPath /run/spire/server/private/api.sock")
        assert out.count("spiffe://flashpods.local/worker") == 1, out
        assert out.count("spiffe://flashpods.local/agent") == 1, out
  '';
}
