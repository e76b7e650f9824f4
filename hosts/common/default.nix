# Settings every host of the example fleet shares.
{ config, lib, ... }:
let
  cfg = config.site;
  # An example so that the fleet evaluates as shipped; pantheros refuses to
  # deploy a host that still has it (see the placeholder below).
  exampleAdminKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEXAMPLEreplaceWithYourOwnAdminKey0000000000 example@pantheros";
in
{
  options.site = {
    adminSshKeys = lib.mkOption {
      type = lib.types.listOf lib.types.singleLineStr;
      default = [ exampleAdminKey ];
      defaultText = lib.literalMD "an example key, which pantheros refuses to deploy";
      description = "Public SSH keys allowed to log in as root (the only way in: passwords are off).";
    };
  };

  config = {
    pantheros.deployment.placeholders.adminSshKeys = {
      filled = !(builtins.elem exampleAdminKey cfg.adminSshKeys);
      file = "hosts/common/default.nix";
      description = "site.adminSshKeys: your SSH public key(s) for root (cat ~/.ssh/id_ed25519.pub)";
    };

    assertions = [
      {
        assertion = cfg.adminSshKeys != [ ];
        message = "site.adminSshKeys is empty: set at least one public key, or you cannot log in.";
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
