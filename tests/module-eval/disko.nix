# Typed stand-in for disko's module (nix-community/disko): the options the
# example hosts set, with disko's types and defaults, and what disko then
# sets itself: fileSystems for every mounted filesystem, swapDevices for
# swap, and boot.loader.grub.devices for a disk with a BIOS boot (EF02)
# partition. Cited files are in disko's lib/types/.
{ config, lib, ... }:
let
  inherit (lib) types;
  inherit (import ./stand-in.nix lib) opt req;

  # lib/default.nix: subType, a submodule chosen by its `type` attribute.
  subType =
    choices:
    lib.mkOptionType {
      name = "subType";
      description = "one of ${lib.concatStringsSep ", " (builtins.attrNames choices)}";
      check = x: builtins.isAttrs x && x ? type && choices ? ${x.type};
      merge = loc: defs: choices.${(lib.last defs).value.type}.merge loc defs;
      nestedTypes = choices;
    };
  tagged =
    name: options:
    types.submodule {
      options = options // {
        type = req (types.enum [ name ]);
      };
    };

  # lib/types/filesystem.nix
  filesystem = tagged "filesystem" {
    format = req types.str;
    mountpoint = opt (types.nullOr types.str) null;
    mountOptions = opt (types.listOf types.str) [ "defaults" ];
    extraArgs = opt (types.listOf types.str) [ ];
  };
  # lib/types/swap.nix
  swap = tagged "swap" {
    randomEncryption = opt types.bool false;
    resumeDevice = opt types.bool false;
    priority = opt (types.nullOr types.int) null;
  };
  # lib/types/gpt.nix: a partition of the GPT on disk `diskName` (its label,
  # device, end and priority defaults follow from the disk and the size).
  partition =
    diskName:
    types.submodule (
      { name, config, ... }:
      {
        options = {
          name = opt types.str name;
          label = opt types.str "disk-${diskName}-${config.name}";
          device = opt types.str "/dev/disk/by-partlabel/${config.label}";
          type = opt (types.either (types.strMatching "[A-Fa-f0-9]{4}") (types.strMatching "[A-Fa-f0-9]{8}-[A-Fa-f0-9]{4}-[A-Fa-f0-9]{4}-[A-Fa-f0-9]{4}-[A-Fa-f0-9]{12}")) "8300";
          size = opt (types.either (types.enum [ "100%" ]) (types.strMatching "[0-9]+[KMGTP]?")) "0";
          start = opt types.str "0";
          end = opt types.str (if config.size == "100%" then "-0" else "+${config.size}");
          priority = opt types.int (if config.size == "100%" then 9001 else 1000);
          content = opt (types.nullOr (subType { inherit filesystem swap; })) null;
        };
      }
    );
  gpt =
    diskName:
    tagged "gpt" {
      partitions = opt (types.attrsOf (partition diskName)) { };
    };
  # lib/types/disk.nix
  disk = types.submodule (
    { name, ... }:
    {
      options = {
        name = opt types.str name;
        type = opt (types.enum [ "disk" ]) "disk";
        device = req types.str;
        imageSize = opt types.str "2G";
        content = req (subType {
          gpt = gpt name;
          inherit filesystem;
        });
      };
    }
  );

  disks = config.disko.devices.disk;
  partitionsOf = d: if d.content.type == "gpt" then builtins.attrValues d.content.partitions else [ ];
  parts = lib.concatLists (
    lib.mapAttrsToList (
      _: d:
      map (p: {
        inherit p d;
        inherit (p) device;
      }) (partitionsOf d)
    ) disks
  );
  mounted = lib.filter (x: x.p.content != null && x.p.content.type == "filesystem" && x.p.content.mountpoint != null) parts;
  swaps = lib.filter (x: x.p.content != null && x.p.content.type == "swap") parts;
in
{
  options.disko = {
    devices.disk = opt (types.attrsOf disk) { };
    enableConfig = opt types.bool true;
  };

  config = lib.mkIf config.disko.enableConfig {
    fileSystems = builtins.listToAttrs (
      map (x: {
        name = x.p.content.mountpoint;
        value = {
          inherit (x) device;
          fsType = x.p.content.format;
          options = x.p.content.mountOptions;
        };
      }) mounted
    );
    swapDevices = map (x: {
      inherit (x) device;
      randomEncryption.enable = x.p.content.randomEncryption;
    }) swaps;
    boot.loader.grub.devices = lib.concatMap (x: lib.optional (x.p.type == "EF02") x.d.device) parts;
  };
}
