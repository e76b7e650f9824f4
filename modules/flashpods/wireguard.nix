# WireGuard for the Flashpods network: the server (hetzner-vps) or a peer
# (a workstation). Built on networking.wireguard.interfaces; the private key
# stays in a file outside the Nix store and can be generated on first boot.
{
  config,
  lib,
  pkgs,
  options,
  ...
}:
let
  inherit (import ../lib/types.nix lib) secretPath;
  inherit (lib) mkOption mkEnableOption mkIf types;
  cfg = config.services.flashpods.wireguard;
  wg = "${pkgs.wireguard-tools}/bin/wg";

  peerModule = types.submodule {
    options = {
      publicKey = mkOption {
        type = types.singleLineStr;
        example = "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=";
        description = "The peer's WireGuard public key (`wg pubkey < key`).";
      };
      allowedIPs = mkOption {
        type = types.listOf types.str;
        example = [ "10.0.0.2/32" ];
        description = "Addresses routed to this peer (for the server: the peer's /32).";
      };
      endpoint = mkOption {
        type = types.nullOr types.str;
        default = null;
        example = "hetzner-vps.example.org:51820";
        description = "Where to reach the peer (`host:port`); peers set it for the server.";
      };
      persistentKeepalive = mkOption {
        type = types.nullOr types.ints.unsigned;
        default = null;
        example = 25;
        description = "Seconds between keepalives, to keep NAT mappings open (25 behind NAT).";
      };
    };
  };
in
{
  options.services.flashpods.wireguard = {
    enable = mkEnableOption "the Flashpods WireGuard interface";

    role = mkOption {
      type = types.enum [
        "server"
        "peer"
      ];
      example = "peer";
      description = "`server` listens on {option}`listenPort` and opens it; a `peer` dials the server.";
    };

    interface = mkOption {
      type = types.str;
      default = "wg0";
      description = "Name of the WireGuard interface.";
    };

    address = mkOption {
      type = types.str;
      example = "10.0.0.1";
      description = "This machine's address on the WireGuard network (the checklist's server is 10.0.0.1).";
    };

    prefixLength = mkOption {
      type = types.ints.between 1 32;
      default = 24;
      description = "Prefix length of the WireGuard network.";
    };

    listenPort = mkOption {
      type = types.port;
      default = 51820;
      description = "UDP port the server listens on.";
    };

    openFirewall = mkOption {
      type = types.bool;
      default = cfg.role == "server";
      defaultText = lib.literalExpression ''config.services.flashpods.wireguard.role == "server"'';
      description = "Open {option}`listenPort` (UDP) to the internet.";
    };

    privateKeyFile = mkOption {
      type = secretPath;
      default = "/var/lib/wireguard/${cfg.interface}.key";
      defaultText = lib.literalExpression ''"/var/lib/wireguard/''${interface}.key"'';
      description = ''
        The private key, as a path string outside the Nix store (root, mode
        0400). Never a Nix path literal: that would copy the key into the
        world-readable store.
      '';
    };

    generatePrivateKey = mkOption {
      type = types.bool;
      default = true;
      description = ''
        Create {option}`privateKeyFile` with `wg genkey` on boot when it does
        not exist. Its public key is then shown by `wg show` (and written
        next to it as `.pub`).
      '';
    };

    peers = mkOption {
      type = types.listOf peerModule;
      default = [ ];
      description = "The other side(s): for the server, each laptop; for a peer, the server.";
    };
  };

  config = mkIf cfg.enable (
    lib.mkMerge [
      # The public key, read back from the host after a deploy and recorded
      # in its facts, where the other side of the tunnel finds it (when the
      # host also uses pantheros' deployment module).
      (lib.optionalAttrs (options ? pantheros.deployment.recordFacts) {
        pantheros.deployment.recordFacts.wireguardPublicKey = mkIf cfg.generatePrivateKey "cat ${
          lib.escapeShellArg "${cfg.privateKeyFile}.pub"
        }";
      })
      {
    assertions = [
      {
        # A peer needs the server; a server may wait for its first laptop's
        # key (the Flashpods module warns about each laptop without one).
        assertion = cfg.role == "server" || cfg.peers != [ ];
        message = "services.flashpods.wireguard.peers is empty: a WireGuard interface without peers carries no traffic.";
      }
      {
        assertion = cfg.role == "server" || lib.all (p: p.endpoint != null) cfg.peers;
        message = "services.flashpods.wireguard: a peer must know the server's endpoint (peers.*.endpoint = \"host:51820\").";
      }
    ];

    networking.wireguard.interfaces.${cfg.interface} = {
      ips = [ "${cfg.address}/${toString cfg.prefixLength}" ];
      listenPort = if cfg.role == "server" then cfg.listenPort else null;
      inherit (cfg) privateKeyFile;
      peers = map (
        p:
        {
          inherit (p) publicKey allowedIPs;
        }
        // lib.optionalAttrs (p.endpoint != null) { inherit (p) endpoint; }
        // lib.optionalAttrs (p.persistentKeepalive != null) { inherit (p) persistentKeepalive; }
      ) cfg.peers;
    };

    networking.firewall.allowedUDPPorts = lib.optional cfg.openFirewall cfg.listenPort;

    # The scripted backend of networking.wireguard, also on hosts that use
    # networkd (where nixpkgs defaults to the networkd backend): its
    # wireguard-<interface>.service is what the key unit, rsync, the health
    # checks and the VM test order themselves after; the networkd backend
    # has no such unit (nixos/modules/services/networking/wireguard-networkd.nix).
    networking.wireguard.useNetworkd = lib.mkDefault false;

    systemd.services."pantheros-wireguard-key-${cfg.interface}" = mkIf cfg.generatePrivateKey {
      description = "Create the WireGuard private key for ${cfg.interface} if it is missing";
      wantedBy = [ "multi-user.target" ];
      before = [ "wireguard-${cfg.interface}.service" ];
      unitConfig.ConditionPathExists = "!${cfg.privateKeyFile}";
      serviceConfig = {
        Type = "oneshot";
        UMask = "0077";
      };
      script =
        let
          key = lib.escapeShellArg cfg.privateKeyFile;
          pub = lib.escapeShellArg "${cfg.privateKeyFile}.pub";
        in
        ''
          mkdir -p "$(dirname ${key})"
          key=$(${wg} genkey)
          printf '%s\n' "$key" > ${key}
          printf '%s\n' "$key" | ${wg} pubkey > ${pub}
          chmod 0400 ${key}
          chmod 0444 ${pub}
        '';
    };
      }
    ]
  );
}
