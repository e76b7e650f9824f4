# SPIRE for the Flashpods host: a server and an agent for trust domain
# flashpods.local on the nixpkgs `spire` package and its NixOS modules; the
# agent joins with a join token for spiffe://flashpods.local/host, attests
# workloads through Podman's Docker-compatible socket, and the registration
# entries (one per job type, selected by the container label
# flashpods-job-type) are reconciled declaratively on every activation.
{
  config,
  lib,
  pkgs,
  ...
}:
let
  inherit (lib) mkOption mkEnableOption mkIf types;
  cfg = config.services.flashpods.spire;
  serverSocket = "/run/spire/server/private/api.sock";
  rendered = (import ../lib).spire {
    inherit (cfg)
      trustDomain
      hostId
      containerSocket
      jobTypes
      labelKey
      ;
    bindPort = cfg.serverPort;
    serverSocketPath = serverSocket;
    joinTokenFile = "$CREDENTIALS_DIRECTORY/join_token";
    trustBundlePath = "$CREDENTIALS_DIRECTORY/trust_bundle";
  };
  entriesFile = pkgs.writeText "flashpods-spire-entries" (
    lib.concatMapStrings (e: "${e.spiffeID} ${e.parentID} ${lib.concatStringsSep "," e.selectors}\n") cfg.entries
  );
  bootstrapDir = "/run/pantheros-spire";
in
{
  options.services.flashpods.spire = {
    enable = mkEnableOption "SPIRE server and agent for Flashpods workloads";

    package = lib.mkPackageOption pkgs "spire" { };

    trustDomain = mkOption {
      type = types.str;
      default = "flashpods.local";
      description = "SPIFFE trust domain.";
    };

    hostId = mkOption {
      type = types.str;
      default = "spiffe://${cfg.trustDomain}/host";
      defaultText = lib.literalExpression ''"spiffe://''${trustDomain}/host"'';
      description = "SPIFFE ID the agent joins as (the parent of the workload entries).";
    };

    serverPort = mkOption {
      type = types.port;
      default = 8081;
      description = "Port of the SPIRE server (bound to 127.0.0.1: server and agent share the host).";
    };

    containerSocket = mkOption {
      type = types.str;
      default = "/run/flashpods/podman.sock";
      description = "Podman's Docker-compatible API socket, used by the docker workload attestor.";
    };

    labelKey = mkOption {
      type = types.str;
      default = "flashpods-job-type";
      description = "Container label whose value selects the workload's identity.";
    };

    jobTypes = mkOption {
      type = types.listOf types.str;
      default = [
        "worker"
        "agent"
      ];
      description = "Job types; each gets spiffe://<trustDomain>/<type> for containers labelled <labelKey>=<type>.";
    };

    entries = mkOption {
      type = types.listOf (
        types.submodule {
          options = {
            spiffeID = mkOption {
              type = types.str;
              description = "SPIFFE ID the workload receives.";
            };
            parentID = mkOption {
              type = types.str;
              description = "Parent (the agent's host ID).";
            };
            selectors = mkOption {
              type = types.nonEmptyListOf types.str;
              description = "Selectors, e.g. docker:label:flashpods-job-type:worker.";
            };
          };
        }
      );
      default = rendered.entries;
      defaultText = lib.literalMD "one entry per job type";
      description = ''
        Registration entries under {option}`hostId`. Reconciled on every
        activation: missing ones are created, others under the same parent
        (and duplicates) are deleted.
      '';
    };
  };

  config = mkIf cfg.enable {
    assertions = [
      {
        assertion = lib.all (e: lib.hasPrefix "spiffe://${cfg.trustDomain}/" e.spiffeID) cfg.entries;
        message = "services.flashpods.spire.entries: every spiffeID must be in the trust domain ${cfg.trustDomain}.";
      }
      {
        assertion = lib.all (e: e.parentID == cfg.hostId) cfg.entries;
        message = "services.flashpods.spire.entries: every parentID must be ${cfg.hostId} (only those are reconciled).";
      }
    ];

    services.spire.server = {
      enable = true;
      inherit (cfg) package;
      settings = rendered.serverSettings;
    };

    services.spire.agent = {
      enable = true;
      inherit (cfg) package;
      settings = rendered.agentSettings;
    };

    # Bootstrap: a fresh join token for the host's ID and the trust bundle,
    # handed to the agent as systemd credentials (never in the store).
    systemd.services.pantheros-spire-bootstrap = {
      description = "Join token and trust bundle for the SPIRE agent";
      after = [ "spire-server.service" ];
      requires = [ "spire-server.service" ];
      before = [ "spire-agent.service" ];
      requiredBy = [ "spire-agent.service" ];
      path = [ cfg.package ];
      serviceConfig = {
        Type = "oneshot";
        RemainAfterExit = true;
        UMask = "0077";
      };
      script =
        let
          socket = lib.escapeShellArg serverSocket;
          dir = lib.escapeShellArg bootstrapDir;
        in
        ''
          for i in $(seq 120); do
            spire-server healthcheck -socketPath ${socket} >/dev/null 2>&1 && break
            sleep 1
          done
          mkdir -p ${dir}
          spire-server bundle show -socketPath ${socket} > ${dir}/trust_bundle
          spire-server token generate -socketPath ${socket} -spiffeID ${lib.escapeShellArg cfg.hostId} -ttl 3600 \
            | sed -n 's/^Token: //p' > ${dir}/join_token
          test -s ${dir}/join_token
        '';
    };

    systemd.services.spire-agent = {
      serviceConfig.LoadCredential = [
        "join_token:${bootstrapDir}/join_token"
        "trust_bundle:${bootstrapDir}/trust_bundle"
      ];
    };

    # Declarative registration entries, reconciled on every activation.
    systemd.services.pantheros-spire-entries = {
      description = "Reconcile the Flashpods SPIRE registration entries";
      after = [
        "spire-server.service"
        "pantheros-spire-bootstrap.service"
      ];
      requires = [ "spire-server.service" ];
      wantedBy = [ "multi-user.target" ];
      restartTriggers = [ entriesFile ];
      path = [
        cfg.package
        pkgs.jq
        pkgs.coreutils
        pkgs.gnugrep
        pkgs.gnused
      ];
      serviceConfig = {
        Type = "oneshot";
        RemainAfterExit = true;
      };
      script = ''
        ${pkgs.runtimeShell} ${../lib/spire-entries.sh} ${
          lib.escapeShellArgs [
            serverSocket
            cfg.hostId
            "${entriesFile}"
          ]
        }
      '';
    };

    # The agent reads the container socket through the flashpods group.
    users.users.spire-agent.extraGroups = lib.mkIf (config.services.flashpods.enable or false) [
      (config.services.flashpods.group or "flashpods")
    ];
  };
}
