# How pantheros reaches, activates and checks this host.
#
# Nothing here changes the system itself: these options are metadata that
# `pantheros` reads from the flake in one evaluation
# (`config.pantheros.deployment`).
{
  config,
  lib,
  pkgs,
  ...
}:
let
  inherit (lib) mkOption types;
  cfg = config.pantheros.deployment;
in
{
  options.pantheros.deployment = {
    targetHost = mkOption {
      type = types.nullOr types.str;
      default = null;
      example = "203.0.113.10";
      description = ''
        Address or SSH alias pantheros connects to. `null` means the
        attribute name under `nixosConfigurations`. `localhost` deploys to
        the machine pantheros runs on, without SSH.
      '';
    };

    placeholders = mkOption {
      type = types.attrsOf (
        types.submodule {
          options = {
            filled = mkOption {
              type = types.bool;
              description = "Whether the example value has been replaced by this host's own.";
            };
            file = mkOption {
              type = types.str;
              example = "hosts/hetzner-vps/default.nix";
              description = "The file to edit to fill it in.";
            };
            description = mkOption {
              type = types.str;
              example = "the server's IPv6 address (the Hetzner API shows it)";
              description = "What to put there, for the error message.";
            };
          };
        }
      );
      default = { };
      example = lib.literalExpression ''
        {
          ipv6 = {
            filled = address != "2001:db8::1/64";
            file = "hosts/hetzner-vps/default.nix";
            description = "the server's IPv6 address";
          };
        }
      '';
      description = ''
        Example values this host still carries, so that the configuration
        evaluates (and `nix flake check` runs) before it is filled in.
        pantheros refuses to deploy, provision, install or bring up a host
        with a placeholder that is not `filled`, naming each one and its
        file; `pantheros hosts` marks such hosts "needs setup". Declare one
        where an example stands in for a value only the user knows, with
        `filled` comparing the value to the example.
      '';
    };

    targetUser = mkOption {
      type = types.str;
      default = "root";
      description = ''
        User pantheros logs in as. Any user other than root runs the
        activation through {option}`pantheros.deployment.privilegeEscalationCommand`.
      '';
    };

    targetPort = mkOption {
      type = types.port;
      default = 22;
      description = "SSH port of the target.";
    };

    sshOptions = mkOption {
      type = types.listOf types.str;
      default = [ ];
      example = [
        "-o"
        "ProxyJump=bastion.example.org"
      ];
      description = "Extra arguments for every `ssh` call to this host (also used by `nix copy`).";
    };

    tags = mkOption {
      type = types.listOf types.str;
      default = [ ];
      example = [
        "server"
        "eu"
      ];
      description = "Tags for selecting hosts on the command line with `@tag`.";
    };

    provider = mkOption {
      type = types.nullOr types.str;
      default = null;
      example = "hetzner";
      description = ''
        Where the machine runs. `"hetzner"` makes the host available to
        `pantheros provision`, which reads {option}`pantheros.deployment.hetzner`.
      '';
    };

    profile = mkOption {
      type = types.str;
      default = "/nix/var/nix/profiles/system";
      description = "System profile whose generations pantheros sets and rolls back.";
    };

    buildOnTarget = mkOption {
      type = types.bool;
      default = false;
      description = ''
        Copy the derivation to the target and build it there instead of
        building locally and copying the result.
      '';
    };

    substituteOnDestination = mkOption {
      type = types.bool;
      default = true;
      description = ''
        Let the target fetch paths from its own binary caches while copying
        (`nix copy --substitute-on-destination`), which is usually faster
        than uploading them from the deploying machine.
      '';
    };

    magicRollback = mkOption {
      type = types.bool;
      default = true;
      description = ''
        After activation, prove the host is still reachable over a fresh SSH
        connection. Without that proof within
        {option}`pantheros.deployment.confirmTimeout` seconds the target
        rolls itself back to the previous generation.
      '';
    };

    confirmTimeout = mkOption {
      type = types.ints.positive;
      default = 30;
      description = "Seconds the target waits for the reachability proof before it rolls itself back.";
    };

    activationTimeout = mkOption {
      type = types.ints.positive;
      default = 600;
      description = "Seconds `switch-to-configuration` may run before it counts as failed.";
    };

    rollbackOnFailedUnits = mkOption {
      type = types.bool;
      default = true;
      description = ''
        Treat `switch-to-configuration` exit status 4 (some units failed to
        start) as a failed activation and roll back.
      '';
    };

    rollbackOnHealthFailure = mkOption {
      type = types.bool;
      default = true;
      description = "Roll back when a health check still fails after {option}`pantheros.deployment.healthChecks.timeout`.";
    };

    privilegeEscalationCommand = mkOption {
      type = types.listOf types.str;
      default = [
        "sudo"
        "-n"
      ];
      example = [
        "doas"
        "-n"
      ];
      description = ''
        Command prefix for target-side steps when {option}`pantheros.deployment.targetUser`
        is not root. It must not ask for a password (`sudo -n`).
      '';
    };

    healthChecks = {
      services = mkOption {
        type = types.listOf types.str;
        default = [ ];
        example = [
          "sshd.service"
          "nginx.service"
        ];
        description = "Units that must be active (`systemctl is-active`) after activation.";
      };

      http = mkOption {
        type = types.listOf types.str;
        default = [ ];
        example = [ "http://127.0.0.1:8080/health" ];
        description = "URLs fetched from the target itself; each must answer with a 2xx status.";
      };

      commands = mkOption {
        type = types.listOf types.str;
        default = [ ];
        example = [ "test -S /run/flashpods/podman.sock" ];
        description = "Shell commands run on the target; each must exit 0.";
      };

      timeout = mkOption {
        type = types.ints.positive;
        default = 60;
        description = "Seconds the health checks are retried before they count as failed.";
      };
    };

    hetzner = {
      serverType = mkOption {
        type = types.str;
        default = "cx23";
        example = "cpx22";
        description = "Hetzner Cloud server type (`cx22` can no longer be ordered; `cx23` replaces it).";
      };

      location = mkOption {
        type = types.str;
        default = "nbg1";
        example = "fsn1";
        description = "Hetzner Cloud location (fsn1, nbg1, hel1, ash, hil, sin).";
      };

      image = mkOption {
        type = types.str;
        default = "ubuntu-24.04";
        description = "Image the server is created with before NixOS is installed over it.";
      };

      labels = mkOption {
        type = types.attrsOf types.str;
        default = { };
        example = {
          env = "production";
        };
        description = ''
          Extra labels for the server. pantheros always adds
          `managed-by=pantheros` and the host name.
        '';
      };
    };
  };

  config = {
    # HTTP health checks are fetched on the host itself, with curl.
    environment.systemPackages = lib.mkIf (cfg.healthChecks.http != [ ]) [ pkgs.curl ];

    assertions = [
      {
        assertion = lib.all (n: !lib.hasPrefix "hetzner.cloud/" n) (lib.attrNames cfg.hetzner.labels);
        message = "pantheros.deployment.hetzner.labels: the `hetzner.cloud/` prefix is reserved by Hetzner.";
      }
      {
        assertion = lib.hasPrefix "/" cfg.profile;
        message = "pantheros.deployment.profile must be an absolute path, not `${cfg.profile}`.";
      }
    ];
  };
}
