# The Flashpods host firewall (nftables): WireGuard open to the internet,
# the API and rsync only for the laptop over WireGuard, containers kept
# away from both. The rules are a table of their own (rendered by
# lib/nftables.nix), next to the NixOS firewall and Podman's tables.
{ config, lib, ... }:
let
  inherit (lib) mkOption mkEnableOption mkIf types;
  cfg = config.services.flashpods.firewall;
  wg = config.services.flashpods.wireguard;
  rendered = (import ../lib).nftables {
    inherit (cfg)
      tableName
      laptopAddresses
      apiPort
      rsyncPort
      containerNetworks
      containerUsers
      ;
    wireguardInterface = cfg.wireguardInterface;
    wireguardPort = cfg.wireguardPort;
  };
in
{
  options.services.flashpods.firewall = {
    enable = mkEnableOption "the Flashpods nftables rules";

    tableName = mkOption {
      type = types.str;
      default = "flashpods";
      description = "Name of our nftables table (family inet).";
    };

    wireguardInterface = mkOption {
      type = types.str;
      default = wg.interface;
      defaultText = lib.literalExpression "config.services.flashpods.wireguard.interface";
      description = "The WireGuard interface the laptop comes in on.";
    };

    wireguardPort = mkOption {
      type = types.port;
      default = wg.listenPort;
      defaultText = lib.literalExpression "config.services.flashpods.wireguard.listenPort";
      description = "WireGuard UDP port, open to the internet.";
    };

    laptopAddresses = mkOption {
      type = types.listOf types.str;
      example = [ "10.0.0.2" ];
      description = "WireGuard addresses that may use the API and rsync.";
    };

    apiPort = mkOption {
      type = types.port;
      default = 8080;
      description = "TCP port of the Flashpods API.";
    };

    rsyncPort = mkOption {
      type = types.port;
      default = 873;
      description = "TCP port of the rsync daemon.";
    };

    containerNetworks = mkOption {
      type = types.listOf types.str;
      default = [ "10.88.0.0/16" ];
      description = "Address ranges of the container networks (Podman's default network is 10.88.0.0/16).";
    };

    containerUsers = mkOption {
      type = types.listOf types.int;
      default = [ ];
      example = [ 870 ];
      description = ''
        Uids that run rootless Podman. A rootless container's connections
        leave through its network helper (slirp4netns or pasta), a process
        of this user on the host, so they reach the host's own addresses
        from the host itself; the table refuses those to the API and rsync
        ports (an output rule keyed on the uid and a local destination).
      '';
    };
  };

  config = mkIf cfg.enable {
    assertions = [
      {
        assertion = cfg.laptopAddresses != [ ];
        message = "services.flashpods.firewall.laptopAddresses is empty: nobody could reach the API or rsync.";
      }
    ];

    networking.nftables = {
      enable = true;
      # A reload must not flush Podman's (netavark's) tables.
      flushRuleset = false;
      tables.${cfg.tableName} = {
        family = "inet";
        inherit (rendered) content;
      };
    };

    # The NixOS firewall (nftables backend) still decides what comes in at
    # all: let WireGuard in from anywhere and the two ports on the tunnel.
    networking.firewall = {
      enable = lib.mkDefault true;
      # (services.flashpods.wireguard opens it itself when it is the server)
      allowedUDPPorts = lib.optional (!(wg.enable && wg.openFirewall)) cfg.wireguardPort;
      interfaces.${cfg.wireguardInterface}.allowedTCPPorts = [
        cfg.apiPort
        cfg.rsyncPort
      ];
    };
  };
}
