# Settings every host of the example fleet shares.
{ config, lib, ... }:
let
  cfg = config.site;
  # YOUR SSH PUBLIC KEY(S) FOR ROOT: replace the example below with your own
  # (`cat ~/.ssh/id_ed25519.pub`), here or in `site.adminSshKeys` of a host.
  # The example lets the fleet evaluate as shipped; pantheros refuses to
  # deploy a host that still has it.
  adminKeys = [
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEXAMPLEreplaceWithYourOwnAdminKey0000000000 example@pantheros"
  ];
  # The example is known by its text, wherever it is written, so any key
  # you put in its place fills the placeholder.
  isExampleKey = key: lib.hasInfix "EXAMPLEreplaceWithYourOwnAdminKey" key;
in
{
  options.site = {
    adminSshKeys = lib.mkOption {
      type = lib.types.listOf lib.types.singleLineStr;
      default = adminKeys;
      defaultText = lib.literalMD "an example key, which pantheros refuses to deploy";
      description = "Public SSH keys allowed to log in as root (the only way in: passwords are off).";
    };
  };

  config = {
    pantheros.deployment.placeholders.adminSshKeys = {
      filled = !(builtins.any isExampleKey cfg.adminSshKeys);
      file = "hosts/common/default.nix";
      description = "site.adminSshKeys: your SSH public key(s) for root, in place of the example in adminKeys (cat ~/.ssh/id_ed25519.pub)";
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
