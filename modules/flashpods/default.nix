# The Flashpods job host: the flashpods user and its directories, rootless
# Podman with its API socket at /run/flashpods/podman.sock, secrets and the
# API token kept out of the Nix store, the token service and the API as
# hardened services, a daily SQLite backup, and (with one `enable`) the
# WireGuard, firewall, rsync and SPIRE modules wired together.
{
  config,
  lib,
  pkgs,
  ...
}:
let
  inherit (import ../lib/types.nix lib) secretPath;
  inherit (lib)
    mkOption
    mkEnableOption
    mkIf
    mkDefault
    types
    ;
  cfg = config.services.flashpods;
  podmanSocket = "${cfg.runDir}/podman.sock";
  tokenSocket = "${cfg.runDir}/token.sock";
  databasePath = "${cfg.dbDir}/flashpods.db";
  # Rootless Podman needs a runtime directory of its own.
  podmanRuntimeDir = "${cfg.runDir}/podman-runtime";
  # The pantheros key unit whose file is the secrets file, if there is one
  # (hosts without the deployment module have no keys).
  secretsKeyUnit = map (k: "pantheros-key-${k.name}.service") (
    lib.filter (k: k.path == cfg.secretsFile) (lib.attrValues (config.pantheros.deployment.keys or { }))
  );

  hardening = {
    ProtectSystem = "strict";
    ProtectHome = true;
    PrivateTmp = false; # the uploads directory lives under /tmp
    PrivateDevices = true;
    ProtectKernelTunables = true;
    ProtectKernelModules = true;
    ProtectKernelLogs = true;
    ProtectControlGroups = true;
    ProtectClock = true;
    ProtectHostname = true;
    NoNewPrivileges = true;
    RestrictRealtime = true;
    RestrictSUIDSGID = true;
    LockPersonality = true;
    SystemCallArchitectures = "native";
    CapabilityBoundingSet = "";
    AmbientCapabilities = "";
    UMask = "0027";
    Restart = "on-failure";
    RestartSec = 5;
  };
in
{
  imports = [
    ./wireguard.nix
    ./firewall.nix
    ./rsync.nix
    ./spire.nix
  ];

  options.services.flashpods = {
    enable = mkEnableOption "the Flashpods job host (WireGuard, firewall, rootless Podman, rsync, SPIRE, token service, API)";

    user = mkOption {
      type = types.str;
      default = "flashpods";
      description = "User that runs the containers and the services.";
    };

    uid = mkOption {
      type = types.ints.between 1 65535;
      default = 870;
      description = ''
        The user's uid, fixed so that the firewall can name it: rootless
        Podman's network helper opens the containers' connections as this
        user, and the flashpods table refuses them to the API and rsync.
      '';
    };

    group = mkOption {
      type = types.str;
      default = "flashpods";
      description = "Group of {option}`services.flashpods.user`.";
    };

    uploadsDir = mkOption {
      type = types.str;
      default = "/tmp/flashpods/uploads";
      description = "Job inputs uploaded by the laptop over rsync (0755 flashpods).";
    };

    artifactsDir = mkOption {
      type = types.str;
      default = "/var/lib/flashpods/artifacts";
      description = "Job outputs (0755 flashpods).";
    };

    dbDir = mkOption {
      type = types.str;
      default = "/var/lib/flashpods/db";
      description = "The SQLite database's directory (0755 flashpods).";
    };

    logDir = mkOption {
      type = types.str;
      default = "/var/log/flashpods";
      description = "Log directory (0755 flashpods).";
    };

    runDir = mkOption {
      type = types.str;
      default = "/run/flashpods";
      description = "Sockets: podman.sock and token.sock (0750 flashpods).";
    };

    configDir = mkOption {
      type = types.str;
      default = "/etc/flashpods";
      description = "Secrets and the API token (0700 root).";
    };

    secretsFile = mkOption {
      type = secretPath;
      default = "${cfg.configDir}/secrets.json";
      defaultText = lib.literalExpression ''"''${configDir}/secrets.json"'';
      description = ''
        JSON with the job secrets (`anthropic_api_key`, `github_token`, …),
        provisioned out of band (or by agenix/sops-nix): a path string, never
        a Nix path literal. Its mode is forced to 0600 root on boot.
      '';
    };

    apiTokenFile = mkOption {
      type = secretPath;
      default = "${cfg.configDir}/api-token";
      defaultText = lib.literalExpression ''"''${configDir}/api-token"'';
      description = "The API's bearer token (0600 root); generated (32 random bytes, hex) when missing.";
    };

    # The WireGuard interface itself (address, prefix, port) is configured
    # through services.flashpods.wireguard; the host only adds its laptops as peers.
    wireguard = {
      laptops = mkOption {
        type = types.attrsOf (
          types.submodule {
            options = {
              address = mkOption {
                type = types.str;
                example = "10.0.0.2";
                description = "The laptop's WireGuard address.";
              };
              publicKey = mkOption {
                type = types.nullOr types.singleLineStr;
                description = ''
                  The laptop's WireGuard public key. `null` while it is not
                  known yet (the laptop makes its key at its first deploy,
                  and pantheros records it in the laptop's facts): the
                  laptop keeps its address in the firewall and rsync, but is
                  no WireGuard peer until then (a warning says so).
                '';
              };
            };
          }
        );
        default = { };
        example = lib.literalExpression ''{ yoga = { address = "10.0.0.2"; publicKey = "…"; }; }'';
        description = "The laptops: WireGuard peers allowed to use the API and rsync.";
      };
    };

    containerNetworks = mkOption {
      type = types.listOf types.str;
      default = [ "10.88.0.0/16" ];
      description = "Container networks, kept away from the API and rsync.";
    };

    images = mkOption {
      type = types.listOf types.package;
      default = [ ];
      example = lib.literalExpression "[ (pkgs.dockerTools.pullImage { … }) ]";
      description = "Image archives (`podman load` format) loaded into the flashpods user's store on boot.";
    };

    tokenService = {
      package = mkOption {
        type = types.nullOr types.package;
        default = null;
        description = ''
          The token service. Its unit is only created when this is set. It
          gets FLASHPODS_TOKEN_SOCKET, FLASHPODS_TOKEN_AUDIENCE,
          FLASHPODS_SECRETS_FILE (a systemd credential) and
          SPIFFE_ENDPOINT_SOCKET in its environment.
        '';
      };
      extraArgs = mkOption {
        type = types.listOf types.str;
        default = [ ];
        description = "Extra command-line arguments.";
      };
      audience = mkOption {
        type = types.str;
        default = "flashpods-token-service";
        description = ''
          The audience of the JWT-SVIDs the token service accepts (a job
          fetches one for it and presents it as a bearer token); given to
          the service as FLASHPODS_TOKEN_AUDIENCE.
        '';
      };
    };

    api = {
      package = mkOption {
        type = types.nullOr types.package;
        default = null;
        description = ''
          The Flashpods API. Its unit is only created when this is set. It
          gets FLASHPODS_LISTEN, FLASHPODS_DATABASE, FLASHPODS_API_TOKEN_FILE
          (a systemd credential), FLASHPODS_PODMAN_SOCKET,
          FLASHPODS_UPLOADS_DIR and FLASHPODS_ARTIFACTS_DIR.
        '';
      };
      port = mkOption {
        type = types.port;
        default = 8080;
        description = "API port, on the WireGuard address.";
      };
      schema = mkOption {
        type = types.nullOr types.path;
        default = null;
        description = "SQL schema that initialises the database once, when it does not exist yet.";
      };
      extraArgs = mkOption {
        type = types.listOf types.str;
        default = [ ];
        description = "Extra command-line arguments.";
      };
    };

    backup = {
      enable = mkOption {
        type = types.bool;
        default = true;
        description = "Back up the SQLite database daily.";
      };
      directory = mkOption {
        type = types.str;
        default = "/var/lib/flashpods/backups";
        description = "Where backups go.";
      };
      keep = mkOption {
        type = types.ints.positive;
        default = 14;
        description = "How many daily backups to keep.";
      };
      onCalendar = mkOption {
        type = types.str;
        default = "daily";
        description = "When to back up (systemd OnCalendar).";
      };
    };
  };

  config = mkIf cfg.enable {
    assertions = [
      {
        assertion = cfg.wireguard.laptops != { };
        message = "services.flashpods.wireguard.laptops is empty: no laptop could reach the API.";
      }
      {
        assertion = cfg.api.package == null || cfg.api.schema != null;
        message = "services.flashpods.api.schema must be set with api.package: the database is initialised from it.";
      }
      {
        assertion = lib.hasPrefix cfg.runDir podmanSocket;
        message = "services.flashpods.runDir must hold the Podman socket.";
      }
    ];

    warnings =
      lib.optional (cfg.api.package == null) "services.flashpods.api.package is not set: the Flashpods API is not started."
      ++ lib.mapAttrsToList (
        name: _:
        "services.flashpods.wireguard.laptops.${name}.publicKey is not known yet: ${name} is no WireGuard peer (deploy ${name}, then this host again)"
      ) (lib.filterAttrs (_: l: l.publicKey == null) cfg.wireguard.laptops);

    users.groups.${cfg.group} = { };
    users.users.${cfg.user} = {
      isSystemUser = true;
      inherit (cfg) uid;
      inherit (cfg) group;
      home = "/var/lib/flashpods";
      createHome = true;
      # Rootless Podman maps container users into these ranges.
      subUidRanges = [
        {
          startUid = 200000;
          count = 65536;
        }
      ];
      subGidRanges = [
        {
          startGid = 200000;
          count = 65536;
        }
      ];
    };

    # The checklist's directories: (path, mode), owned by flashpods unless
    # marked root.
    systemd.tmpfiles.settings."10-flashpods" = lib.listToAttrs (
      map
        (
          d:
          lib.nameValuePair d.path {
            d = {
              inherit (d) mode;
              user = if d.root or false then "root" else cfg.user;
              group = if d.root or false then "root" else cfg.group;
            };
          }
        )
        [
          {
            path = cfg.uploadsDir;
            mode = "0755";
          }
          {
            path = cfg.artifactsDir;
            mode = "0755";
          }
          {
            path = cfg.dbDir;
            mode = "0755";
          }
          {
            path = cfg.logDir;
            mode = "0755";
          }
          {
            path = cfg.runDir;
            mode = "0750";
          }
          {
            path = podmanRuntimeDir;
            mode = "0700";
          }
          {
            path = cfg.configDir;
            mode = "0700";
            root = true;
          }
          {
            path = cfg.backup.directory;
            mode = "0750";
            root = true;
          }
        ]
    );

    # The parts, wired together.
    services.flashpods.wireguard = {
      enable = true;
      role = "server";
      # The checklist's server address, unless the host sets another.
      address = mkDefault "10.0.0.1";
      peers = lib.mapAttrsToList (_: l: {
        inherit (l) publicKey;
        allowedIPs = [ "${l.address}/32" ];
      }) (lib.filterAttrs (_: l: l.publicKey != null) cfg.wireguard.laptops);
    };
    services.flashpods.firewall = {
      enable = mkDefault true;
      laptopAddresses = lib.mapAttrsToList (_: l: l.address) cfg.wireguard.laptops;
      apiPort = cfg.api.port;
      inherit (cfg) containerNetworks;
      containerUsers = [ cfg.uid ];
    };
    services.flashpods.rsync = {
      enable = mkDefault true;
      path = cfg.uploadsDir;
      inherit (cfg) user group;
    };
    services.flashpods.spire = {
      enable = mkDefault true;
      containerSocket = podmanSocket;
    };

    virtualisation.podman.enable = true;

    # Rootless Podman's API for the flashpods user, at a fixed path that
    # the API and the SPIRE agent (group flashpods) can reach.
    systemd.services.flashpods-podman = {
      description = "Podman API for the flashpods user";
      wantedBy = [ "multi-user.target" ];
      after = [ "systemd-tmpfiles-setup.service" ];
      path = [
        "/run/wrappers"
        config.virtualisation.podman.package
      ];
      environment.XDG_RUNTIME_DIR = podmanRuntimeDir;
      serviceConfig = {
        User = cfg.user;
        Group = cfg.group;
        UMask = "0007";
        ExecStart = "${lib.getExe config.virtualisation.podman.package} system service --time=0 unix://${podmanSocket}";
        Restart = "on-failure";
      };
    };

    systemd.services.flashpods-podman-images = mkIf (cfg.images != [ ]) {
      description = "Load the Flashpods container images";
      wantedBy = [ "multi-user.target" ];
      after = [ "flashpods-podman.service" ];
      path = [
        "/run/wrappers"
        config.virtualisation.podman.package
      ];
      environment.XDG_RUNTIME_DIR = podmanRuntimeDir;
      serviceConfig = {
        Type = "oneshot";
        RemainAfterExit = true;
        User = cfg.user;
        Group = cfg.group;
      };
      script = lib.concatMapStrings (img: "podman load -i ${lib.escapeShellArg "${img}"}\n") cfg.images;
    };

    # Secrets: never in the store; modes enforced; the API token created
    # once (32 random bytes, hex) when missing.
    systemd.services.flashpods-secrets = {
      description = "Check the Flashpods secrets and create the API token";
      wantedBy = [ "multi-user.target" ];
      # When the secrets file is a pantheros key: after it, and again
      # whenever pantheros writes a new value.
      after = secretsKeyUnit;
      wants = secretsKeyUnit;
      partOf = secretsKeyUnit;
      # Only units this host has (they exist when their package is set).
      before =
        lib.optional (cfg.api.package != null) "flashpods-api.service"
        ++ lib.optional (cfg.tokenService.package != null) "flashpods-token-service.service";
      serviceConfig = {
        Type = "oneshot";
        RemainAfterExit = true;
        UMask = "0077";
      };
      path = [ pkgs.coreutils ];
      script = "${pkgs.runtimeShell} ${../lib/flashpods-secrets.sh} ${
        lib.escapeShellArgs [
          cfg.apiTokenFile
          cfg.secretsFile
        ]
      }";
    };

    systemd.services.flashpods-token-service = mkIf (cfg.tokenService.package != null) {
      description = "Flashpods token service";
      wantedBy = [ "multi-user.target" ];
      after = [
        "flashpods-secrets.service"
        "spire-agent.service"
      ];
      requires = [ "flashpods-secrets.service" ];
      environment = {
        FLASHPODS_TOKEN_SOCKET = tokenSocket;
        FLASHPODS_TOKEN_AUDIENCE = cfg.tokenService.audience;
        FLASHPODS_SECRETS_FILE = "%d/secrets.json";
        SPIFFE_ENDPOINT_SOCKET = "unix:///run/spire/agent/public/api.sock";
      };
      serviceConfig = hardening // {
        User = cfg.user;
        Group = cfg.group;
        ExecStart = lib.escapeShellArgs ([ (lib.getExe cfg.tokenService.package) ] ++ cfg.tokenService.extraArgs);
        LoadCredential = [ "secrets.json:${cfg.secretsFile}" ];
        ReadWritePaths = [ cfg.runDir ];
        RestrictAddressFamilies = [ "AF_UNIX" ];
        PrivateNetwork = true;
      };
    };

    systemd.services.flashpods-api = mkIf (cfg.api.package != null) {
      description = "Flashpods API";
      wantedBy = [ "multi-user.target" ];
      after = [
        "flashpods-secrets.service"
        "flashpods-podman.service"
        "wireguard-${config.services.flashpods.wireguard.interface}.service"
        "network-online.target"
      ];
      wants = [ "network-online.target" ];
      requires = [ "flashpods-secrets.service" ];
      environment = {
        FLASHPODS_LISTEN = "${config.services.flashpods.wireguard.address}:${toString cfg.api.port}";
        FLASHPODS_DATABASE = databasePath;
        FLASHPODS_API_TOKEN_FILE = "%d/api-token";
        FLASHPODS_PODMAN_SOCKET = "unix://${podmanSocket}";
        FLASHPODS_UPLOADS_DIR = cfg.uploadsDir;
        FLASHPODS_ARTIFACTS_DIR = cfg.artifactsDir;
        FLASHPODS_TOKEN_SOCKET = tokenSocket;
      };
      # The database is created from the schema once, never overwritten.
      preStart = lib.optionalString (cfg.api.schema != null) ''
        if [ ! -e ${lib.escapeShellArg databasePath} ]; then
          ${lib.getExe pkgs.sqlite} ${lib.escapeShellArg "${databasePath}.new"} < ${lib.escapeShellArg "${cfg.api.schema}"}
          mv ${lib.escapeShellArg "${databasePath}.new"} ${lib.escapeShellArg databasePath}
        fi
      '';
      serviceConfig = hardening // {
        User = cfg.user;
        Group = cfg.group;
        ExecStart = lib.escapeShellArgs ([ (lib.getExe cfg.api.package) ] ++ cfg.api.extraArgs);
        LoadCredential = [ "api-token:${cfg.apiTokenFile}" ];
        ReadWritePaths = [
          cfg.dbDir
          cfg.artifactsDir
          cfg.uploadsDir
          cfg.logDir
          cfg.runDir
        ];
        RestrictAddressFamilies = [
          "AF_UNIX"
          "AF_INET"
          "AF_INET6"
        ];
      };
    };

    systemd.services.flashpods-db-backup = mkIf cfg.backup.enable {
      description = "Back up the Flashpods database";
      serviceConfig = {
        Type = "oneshot";
        UMask = "0077";
      };
      path = [
        pkgs.sqlite
        pkgs.coreutils
      ];
      script = "${pkgs.runtimeShell} ${../lib/flashpods-backup.sh} ${
        lib.escapeShellArgs [
          databasePath
          cfg.backup.directory
          (toString cfg.backup.keep)
        ]
      }";
    };
    systemd.timers.flashpods-db-backup = mkIf cfg.backup.enable {
      wantedBy = [ "timers.target" ];
      timerConfig = {
        OnCalendar = cfg.backup.onCalendar;
        Persistent = true;
      };
    };
  };
}
