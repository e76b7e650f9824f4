# Stand-in `pkgs` for the flake-level evaluation: the package attributes
# and builders the flake, the modules, the hosts and the VM tests use, each
# one that exists in nixpkgs (nixos-26.05) under that name. A package is a
# derivation that is evaluated, never built; a builder checks the arguments
# the way the real one would read them.
{
  lib,
  system,
  path,
  nixosSystem,
}:
let
  fake =
    name:
    derivation {
      inherit name system;
      builder = "/bin/sh";
      args = [
        "-c"
        "echo 'stand-in package: evaluated, never built' >&2; exit 1"
      ];
    }
    // {
      pname = name;
      version = "0";
      meta.mainProgram = name;
    };
  text =
    name: body:
    assert builtins.isString body;
    fake name;

  packages = lib.genAttrs [
    # pkgs/by-name and pkgs/top-level/all-packages.nix
    "bash"
    "cargo"
    "cargo-nextest"
    "clippy"
    "coreutils"
    "curl"
    "findutils"
    "gnugrep"
    "gnused"
    "installShellFiles"
    "iproute2"
    "jq"
    "makeWrapper"
    "nixfmt"
    "openssh"
    "podman"
    "python3"
    "rsync"
    "rustc"
    "rustfmt"
    "spire"
    "sqlite"
    "systemd"
    "util-linux"
    "wireguard-tools"
  ] fake;

  pkgs = packages // {
    inherit lib path system;
    # pkgs/top-level/all-packages.nix: the shell NixOS runs unit scripts with.
    runtimeShell = "${packages.bash}/bin/bash";
    stdenv.hostPlatform = lib.systems.elaborate system;
    stdenv.buildPlatform = lib.systems.elaborate system;
    # pkgs/build-support/trivial-builders
    writeText = text;
    writeScript = text;
    writeShellScript = text;
    writeShellScriptBin = text;
    # writeTextDir "health" "ok": a directory holding that one file.
    writeTextDir = text;
    writeShellApplication =
      {
        name,
        text,
        runtimeInputs ? [ ],
        ...
      }:
      assert builtins.isString text;
      assert builtins.all lib.isDerivation runtimeInputs;
      fake name;
    mkShell =
      {
        packages ? [ ],
        inputsFrom ? [ ],
        ...
      }:
      assert builtins.all lib.isDerivation (packages ++ inputsFrom);
      fake "shell";
    # pkgs/top-level/splice.nix: callPackage fills a function's arguments
    # from pkgs.
    callPackage =
      f: args:
      let
        fn = if builtins.isFunction f then f else import f;
      in
      fn (builtins.intersectAttrs (builtins.functionArgs fn) pkgs // args);
    # pkgs/build-support/rust/build-rust-package: what it reads of its
    # arguments (the source, the lock file, the package's name and meta).
    rustPlatform.buildRustPackage =
      attrs:
      assert builtins.pathExists attrs.cargoLock.lockFile;
      assert builtins.pathExists "${attrs.src}/Cargo.toml";
      assert builtins.isString (attrs.postInstall or "");
      fake "${attrs.pname}-${attrs.version}"
      // {
        inherit (attrs) pname version;
        meta = attrs.meta or { } // {
          mainProgram = attrs.meta.mainProgram or attrs.pname;
        };
      };
    dockerTools.pullImage = args: fake "docker-image-${args.imageName or "image"}";
    # nixos/lib/testing: a VM test evaluates each node as a NixOS system
    # with the test's QEMU options (nixos/modules/virtualisation/qemu-vm.nix).
    testers.runNixOSTest = import ./nixos/test.nix { inherit lib pkgs nixosSystem; };
  };
in
pkgs
