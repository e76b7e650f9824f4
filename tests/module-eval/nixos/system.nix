# What building a NixOS system does with a configuration, as far as
# evaluation goes, for the typed stand-ins of ./options.nix:
# - nixos/modules/system/activation/top-level.nix refuses failed assertions
#   and shows warnings before it yields system.build.toplevel;
# - the assertions nixpkgs makes about booting (root file system, GRUB
#   devices) and the defaults the boot loader modules set.
# The toplevel here is a derivation that is evaluated, never built.
{
  config,
  lib,
  pkgs,
  ...
}:
let
  failed = map (a: a.message) (lib.filter (a: !a.assertion) config.assertions);
  grub = config.boot.loader.grub;
in
{
  config = {
    assertions = [
      # nixos/modules/system/boot/stage-1.nix
      {
        assertion = config.boot.isContainer || lib.any (fs: fs.mountPoint == "/") (lib.attrValues config.fileSystems);
        message = "The ‘fileSystems’ option does not specify your root file system.";
      }
      # nixos/modules/system/boot/loader/grub/grub.nix (mirroredBoots is
      # derived from devices there)
      {
        assertion = !grub.enable || grub.devices != [ ] || grub.mirroredBoots != [ ];
        message = "You must set the option ‘boot.loader.grub.devices’ or 'boot.loader.grub.mirroredBoots' to make the system bootable.";
      }
    ];
    # grub.nix: the single `device` joins `devices`.
    boot.loader.grub.devices = lib.optional (grub.device != "") grub.device;
    # systemd-boot.nix: GRUB is off when systemd-boot is on.
    boot.loader.grub.enable = lib.mkIf config.boot.loader.systemd-boot.enable (lib.mkDefault false);

    system.build.toplevel =
      if failed != [ ] then
        throw "\nFailed assertions:\n${lib.concatMapStrings (m: "- ${m}\n") failed}"
      else
        lib.showWarnings config.warnings (derivation {
          name = "nixos-system-${config.networking.hostName}-${config.system.stateVersion}";
          system = config.nixpkgs.hostPlatform.system;
          builder = "/bin/sh";
          args = [
            "-c"
            "echo 'a stand-in system: evaluated, never built' >&2; exit 1"
          ];
        });
  };
}
