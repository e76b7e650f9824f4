# The rsync daemon that receives job uploads from the laptop: module
# `uploads` on the uploads directory, bound to the WireGuard address,
# `hosts allow` = the laptop only, writing as the flashpods user.
{ config, lib, ... }:
let
  inherit (lib) mkOption mkEnableOption mkIf types;
  cfg = config.services.flashpods.rsync;
  rendered = (import ../lib).rsyncd {
    inherit (cfg)
      address
      allow
      path
      user
      group
      moduleName
      port
      maxConnections
      ;
  };
in
{
  options.services.flashpods.rsync = {
    enable = mkEnableOption "the Flashpods rsync daemon";

    address = mkOption {
      type = types.str;
      default = config.services.flashpods.wireguard.address;
      defaultText = lib.literalExpression "config.services.flashpods.wireguard.address";
      description = "Address the daemon binds to (the WireGuard address, so it is never on the public interface).";
    };

    allow = mkOption {
      type = types.listOf types.str;
      default = config.services.flashpods.firewall.laptopAddresses;
      defaultText = lib.literalExpression "config.services.flashpods.firewall.laptopAddresses";
      description = "Addresses allowed to connect (`hosts allow`); everyone else is denied.";
    };

    path = mkOption {
      type = types.str;
      default = "/tmp/flashpods/uploads";
      description = "Directory behind the module.";
    };

    moduleName = mkOption {
      type = types.str;
      default = "uploads";
      description = "Name of the rsync module (`rsync://10.0.0.1/uploads/`).";
    };

    user = mkOption {
      type = types.str;
      default = "flashpods";
      description = "User the module reads and writes as.";
    };

    group = mkOption {
      type = types.str;
      default = "flashpods";
      description = "Group the module reads and writes as.";
    };

    port = mkOption {
      type = types.port;
      default = 873;
      description = "TCP port.";
    };

    maxConnections = mkOption {
      type = types.ints.positive;
      default = 4;
      description = "Simultaneous connections allowed.";
    };
  };

  config = mkIf cfg.enable {
    assertions = [
      {
        assertion = cfg.allow != [ ];
        message = "services.flashpods.rsync.allow is empty: nobody could upload.";
      }
    ];

    services.rsyncd = {
      enable = true;
      inherit (cfg) port;
      inherit (rendered) settings;
    };

    # Binding the WireGuard address needs the interface first.
    systemd.services.rsync = {
      after = [
        "network-online.target"
        "wireguard-${config.services.flashpods.wireguard.interface}.service"
      ];
      wants = [ "network-online.target" ];
    };
  };
}
