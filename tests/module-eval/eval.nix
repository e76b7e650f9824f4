# Evaluate pantheros' NixOS modules with the real module system (nixpkgs'
# lib), where the NixOS options we set are declared by loose stand-ins.
# This checks our own option declarations, types, defaults, assertions and
# the values the modules produce; it cannot check nixpkgs' own options.
# Used by tests/modules_eval.rs when a copy of nixpkgs' lib is available.
{
  libPath,
  root,
  # A Nix path literal given as a key's keyFile (tests/modules_eval.rs):
  # reading `keyLiteral` must fail with the module's reason.
  keyFileLiteral ? null,
}:
let
  lib = import libPath;
  inherit (lib) mkOption types;

  # Like types.anything, but lists from several modules are concatenated.
  loose = lib.mkOptionType {
    name = "loose";
    check = _: true;
    merge =
      loc: defs:
      let
        vs = map (d: d.value) defs;
      in
      if builtins.all builtins.isList vs then
        builtins.concatLists vs
      else if builtins.all (v: builtins.isAttrs v && !(lib.isStringLike v)) vs then
        (types.attrsOf loose).merge loc defs
      else
        lib.mergeEqualOption loc defs;
  };
  looseOpt = mkOption {
    type = loose;
    default = { };
  };

  fake = name: {
    type = "derivation";
    inherit name;
    outPath = "/nix/store/00000000000000000000000000000000-${name}";
    meta.mainProgram = name;
  };
  pkgs =
    lib.genAttrs [
      "wireguard-tools"
      "spire"
      "jq"
      "coreutils"
      "gnugrep"
      "gnused"
      "sqlite"
      "findutils"
      "podman"
      "curl"
    ] fake
    // {
      writeText = name: _: fake name;
      runtimeShell = "/nix/store/00000000000000000000000000000000-bash/bin/bash";
    };

  stubs = {
    options = {
      assertions = mkOption {
        type = types.listOf types.unspecified;
        default = [ ];
      };
      warnings = mkOption {
        type = types.listOf types.str;
        default = [ ];
      };
      networking = looseOpt;
      systemd = looseOpt;
      users = looseOpt;
      virtualisation = looseOpt;
      boot = looseOpt;
      nix = looseOpt;
      time = looseOpt;
      system = looseOpt;
      environment = looseOpt;
      fileSystems = looseOpt;
      disko = looseOpt;
      nixpkgs = looseOpt;
      services = {
        openssh = looseOpt;
        rsyncd = looseOpt;
        spire = looseOpt;
        tailscale = looseOpt;
        qemuGuest = looseOpt;
      };
    };
    config = {
      virtualisation.podman.package = lib.mkDefault (fake "podman");
      _module.args.pkgs = pkgs;
    };
  };

  eval =
    modules:
    lib.evalModules {
      modules = [ stubs ] ++ modules;
      specialArgs.modulesPath = root + "/tests/module-eval/modules-path";
    };

  failed = cfg: map (a: a.message) (builtins.filter (a: !a.assertion) cfg.assertions);

  all = import (root + "/modules/deployment.nix");
  flashpodsModules = [
    (root + "/modules/deployment.nix")
    (root + "/modules/flashpods")
  ];

  server = (eval (flashpodsModules ++ [
    {
      services.flashpods = {
        enable = true;
        wireguard.laptops.yoga = {
          address = "10.0.0.2";
          publicKey = "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=";
        };
        api.package = fake "flashpods-api";
        api.schema = "/dev/null";
      };
    }
  ])).config;

  noLaptops = (eval (flashpodsModules ++ [ { services.flashpods.enable = true; } ])).config;
  # A Flashpods host with one laptop, and `extra` on top.
  flashpodsWith =
    extra:
    (eval (
      flashpodsModules
      ++ [
        {
          services.flashpods = {
            enable = true;
            wireguard.laptops.yoga = {
              address = "10.0.0.2";
              publicKey = "k";
            };
          };
        }
        { services.flashpods = extra; }
      ]
    )).config;
  apiWithoutSchema = flashpodsWith { api.package = fake "flashpods-api"; };
  keyInStore = flashpodsWith {
    wireguard.privateKeyFile = "/nix/store/00000000000000000000000000000000-wg.key";
  };

  peer = (eval [
    (root + "/modules/flashpods/wireguard.nix")
    {
      services.flashpods.wireguard = {
        enable = true;
        role = "peer";
        address = "10.0.0.2";
        peers = [
          {
            publicKey = "k";
            allowedIPs = [ "10.0.0.1/32" ];
          }
        ];
      };
    }
  ]).config;

  hostModules = name: [
    (root + "/modules/deployment.nix")
    (root + "/modules/flashpods")
    (root + "/hosts/common")
    (root + "/hosts/${name}")
    { site.adminSshKeys = [ "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAItest admin@test" ]; }
  ];
  host = name: (eval (hostModules name)).config;
  hetzner = host "hetzner-vps";
  tried = v: (builtins.tryEval (builtins.deepSeq v v)).success;
in
{
  server = {
    failedAssertions = failed server;
    inherit (server) warnings;
    wgIps = server.networking.wireguard.interfaces.wg0.ips;
    wgListenPort = server.networking.wireguard.interfaces.wg0.listenPort;
    wgPeers = server.networking.wireguard.interfaces.wg0.peers;
    udpPorts = server.networking.firewall.allowedUDPPorts;
    wgTcpPorts = server.networking.firewall.interfaces.wg0.allowedTCPPorts;
    nftFlush = server.networking.nftables.flushRuleset;
    nftContent = server.networking.nftables.tables.flashpods.content;
    rsyncSettings = server.services.rsyncd.settings;
    rsyncPort = server.services.rsyncd.port;
    spireTrustDomain = server.services.spire.server.settings.server.trust_domain;
    spireDockerSocket = server.services.spire.agent.settings.plugins.WorkloadAttestor.docker.plugin_data.docker_socket_path;
    spireCredentials = server.systemd.services.spire-agent.serviceConfig.LoadCredential;
    tmpfiles = server.systemd.tmpfiles.settings."10-flashpods";
    user = server.users.users.flashpods;
    apiEnv = server.systemd.services.flashpods-api.environment;
    apiCredentials = server.systemd.services.flashpods-api.serviceConfig.LoadCredential;
    hasTokenService = server.systemd.services ? flashpods-token-service;
    backupTimer = server.systemd.timers.flashpods-db-backup.timerConfig;
    podmanExec = server.systemd.services.flashpods-podman.serviceConfig.ExecStart;
  };
  noLaptops = failed noLaptops;
  apiWithoutSchema = failed apiWithoutSchema;
  # The WireGuard key is typed as secretsFile is: a store path is refused
  # by its type, and a path with a space reaches the key script escaped.
  keyInStore = tried keyInStore.services.flashpods.wireguard.privateKeyFile;
  keyScript =
    (flashpodsWith { wireguard.privateKeyFile = "/var/lib/my keys/wg0.key"; })
    .systemd.services.pantheros-wireguard-key-wg0.script;
  # services.flashpods.secretsFile: an absolute path string outside the
  # store (types.pathWith); values reach shell scripts escaped.
  secretsTypes =
    let
      withSecrets = v: flashpodsWith { secretsFile = v; };
      spaced = withSecrets "/var/lib/my secrets/s.json";
    in
    {
      inStore = tried (withSecrets "/nix/store/00000000000000000000000000000000-s.json").services.flashpods.secretsFile;
      relative = tried (withSecrets "secrets.json").services.flashpods.secretsFile;
      literal = tried (withSecrets ./eval.nix).services.flashpods.secretsFile;
      spaced = tried spaced.services.flashpods.secretsFile;
      script = spaced.systemd.services.flashpods-secrets.script;
    };
  peer = {
    failedAssertions = failed peer;
    listenPort = peer.networking.wireguard.interfaces.wg0.listenPort;
    udpPorts = peer.networking.firewall.allowedUDPPorts or [ ];
  };
  hosts = lib.genAttrs [ "hetzner-vps" "ovh-vps" "yoga" "zephyrus" ] (
    name:
    let
      c = host name;
    in
    {
      # The facts file as a string, as pantheros reads it (JSON of a path
      # would copy it to the store, and it need not exist).
      deployment = c.pantheros.deployment // {
        factsFile =
          if c.pantheros.deployment.factsFile == null then null else toString c.pantheros.deployment.factsFile;
      };
      # Example values (public keys, IPv6, hardware) evaluate; the
      # placeholders in `deployment` say they are still examples.
      wireguardEvaluates = tried (c.networking.wireguard.interfaces or { });
      fileSystemsEvaluate = tried (c.fileSystems or { });
    }
  );
  # nixosModules.default (the deployment module) alone declares only
  # pantheros.deployment: the option names beyond the stand-ins.
  defaultDeclares =
    let
      o = (eval [ (root + "/modules/deployment.nix") ]).options;
      base = (eval [ ]).options;
    in
    {
      top = builtins.filter (n: !(base ? ${n})) (builtins.attrNames o);
      pantheros = builtins.attrNames o.pantheros;
    };
  # nixosModules.flashpods declares its options under the service alone:
  # nothing new at the top level, nothing under `pantheros`.
  flashpodsDeclares =
    let
      o = (eval [ (root + "/modules/flashpods") ]).options;
      base = (eval [ ]).options;
    in
    {
      top = builtins.filter (n: !(base ? ${n})) (builtins.attrNames o);
      services = builtins.filter (n: !(base.services ? ${n})) (builtins.attrNames o.services);
      parts = builtins.filter (
        n: builtins.elem n [ "wireguard" "firewall" "rsync" "spire" ]
      ) (builtins.attrNames o.services.flashpods);
    };
  # What a host that imports only the deployment module and sets nothing gets.
  deploymentDefaults = (eval [ (root + "/modules/deployment.nix") ]).config.pantheros.deployment;
  hetznerAssertions = failed hetzner;
  hetznerFlashpods = hetzner.services.flashpods.enable;
  # The Flashpods secrets as a key: its unit, and the services after it.
  hetznerKeys = {
    deployment = hetzner.pantheros.deployment.keys;
    secretsFile = hetzner.services.flashpods.secretsFile;
    secretsUnit = {
      inherit (hetzner.systemd.services.flashpods-secrets) after wants partOf;
    };
    pathUnit = hetzner.systemd.paths.pantheros-key-flashpods-secrets;
    keyUnit = hetzner.systemd.services.pantheros-key-flashpods-secrets;
  };
  keyBothSources = failed (
    (eval [
      (root + "/modules/deployment.nix")
      {
        pantheros.deployment.keys.k = {
          keyFile = "/a";
          keyCommand = [ "pass" ];
        };
      }
    ]).config
  );
  keyLiteral =
    (eval [
      (root + "/modules/deployment.nix")
      { pantheros.deployment.keys.k.keyFile = keyFileLiteral; }
    ]).config.pantheros.deployment.keys.k.keyFile;
  sshSettings = hetzner.services.openssh.settings;
  # Every option our modules declare (not the stand-ins'), as docs/modules.md
  # lists them: name, type, default, description.
  optionDocs =
    let
      o =
        (eval [
          (root + "/modules/deployment.nix")
          (root + "/modules/flashpods")
        ]).options;
      ours = d: builtins.any (f: lib.hasInfix "/modules/" (toString f)) d.declarations;
    in
    map (d: {
      inherit (d) name description;
      type = d.type;
      default = d.default.text or null;
    }) (builtins.filter (d: ours d && d.visible && !d.internal) (lib.optionAttrSetToDocList o));
}
