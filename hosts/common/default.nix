# Settings every host of the example fleet shares.
{ config, lib, ... }:
let
  cfg = config.pantheros.site;
in
{
  options.pantheros.site = {
    adminSshKeys = lib.mkOption {
      type = lib.types.listOf lib.types.str;
      # No default on purpose: a host without an admin key would lock its
      # owner out, so evaluation fails until the key is set.
      example = [ "ssh-ed25519 AAAAC3Nza... admin@yoga" ];
      description = "Public SSH keys allowed to log in as root (the only way in: passwords are off).";
    };
  };

  config = {
    assertions = [
      {
        assertion = cfg.adminSshKeys != [ ];
        message = "pantheros.site.adminSshKeys is empty: set at least one public key, or you cannot log in.";
      }
    ];

    services.openssh = {
      enable = true;
      # The same settings tests/renderers.rs checks with `sshd -t`.
      settings = (import ../../modules/lib).sshd.settings;
    };
    users.users.root.openssh.authorizedKeys.keys = cfg.adminSshKeys;

    nix.settings = {
      experimental-features = [
        "nix-command"
        "flakes"
      ];
      trusted-users = [ "root" ];
    };

    time.timeZone = lib.mkDefault "UTC";
    system.stateVersion = "26.05";
  };
}
