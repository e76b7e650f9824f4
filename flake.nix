{
  description = "pantheros: deploy, roll back and provision a fleet of NixOS hosts from one flake";

  inputs = {
    nixpkgs.url = "github:NixOS/nixpkgs/nixos-26.05";
    disko = {
      url = "github:nix-community/disko";
      inputs.nixpkgs.follows = "nixpkgs";
    };
  };

  outputs =
    {
      self,
      nixpkgs,
      disko,
    }:
    let
      inherit (nixpkgs) lib;
      systems = [
        "x86_64-linux"
        "aarch64-linux"
      ];
      forAllSystems = f: lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});

      # `nix run .#deploy -- HOST` is `pantheros deploy HOST`.
      subcommandApp =
        pkgs: subcommand: description:
        let
          script = pkgs.writeShellScript "pantheros-${subcommand}" ''
            exec ${lib.getExe self.packages.${pkgs.stdenv.hostPlatform.system}.default} ${subcommand} "$@"
          '';
        in
        {
          type = "app";
          program = "${script}";
          meta = { inherit description; };
        };

      mkHost =
        name:
        lib.nixosSystem {
          modules = [
            disko.nixosModules.disko
            self.nixosModules.default
            ./hosts/common
            (./hosts + "/${name}")
            { networking.hostName = lib.mkDefault name; }
          ];
        };
    in
    {
      packages = forAllSystems (pkgs: {
        default = pkgs.callPackage ./nix/package.nix { };
        pantheros = self.packages.${pkgs.stdenv.hostPlatform.system}.default;
      });

      apps = forAllSystems (pkgs: {
        default = {
          type = "app";
          program = lib.getExe self.packages.${pkgs.stdenv.hostPlatform.system}.default;
          meta.description = "pantheros command line";
        };
        deploy = subcommandApp pkgs "deploy" "Build, activate and verify NixOS hosts";
        build-all = subcommandApp pkgs "build-all" "Build every host of the flake in parallel";
        rollback = subcommandApp pkgs "rollback" "List generations and roll a host back";
        provision = subcommandApp pkgs "provision" "Create Hetzner Cloud servers and install NixOS on them";
        up = subcommandApp pkgs "up" "From nothing to a verified Hetzner host: create, install, deploy";
        hosts = subcommandApp pkgs "hosts" "List the fleet and its deployment metadata";
        validate = subcommandApp pkgs "validate" "Check a deployed Flashpods host against its configuration (the sign-off table)";
      });

      nixosModules = {
        # Deployment metadata, plus the few units and settings deploys rely
        # on (one unit per key, curl for HTTP health checks); see the file's
        # header.
        default = ./modules/deployment.nix;
        deployment = ./modules/deployment.nix;
        # The Flashpods job host with its parts (services.flashpods.wireguard,
        # .firewall, .rsync, .spire), which it imports itself.
        flashpods = ./modules/flashpods;
        # A laptop's side of the Flashpods WireGuard link, on its own.
        flashpods-wireguard = ./modules/flashpods/wireguard.nix;
      };

      nixosConfigurations = lib.genAttrs [
        "hetzner-vps"
        "ovh-vps"
        "yoga"
        "zephyrus"
      ] mkHost;

      checks = forAllSystems (pkgs: {
        package = self.packages.${pkgs.stdenv.hostPlatform.system}.default;
        flashpods = import ./tests/vm/flashpods.nix { inherit pkgs self; };
        deploy = import ./tests/vm/deploy.nix { inherit pkgs self; };
      });

      devShells = forAllSystems (pkgs: {
        default = pkgs.mkShell {
          inputsFrom = [ self.packages.${pkgs.stdenv.hostPlatform.system}.default ];
          packages = [
            pkgs.cargo
            pkgs.rustc
            pkgs.clippy
            pkgs.rustfmt
            pkgs.cargo-nextest
            pkgs.nixfmt
          ];
        };
      });

      formatter = forAllSystems (pkgs: pkgs.nixfmt);
    };
}
