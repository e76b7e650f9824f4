# How pantheros reaches, activates and checks this host.
#
# Mostly metadata that `pantheros` reads from the flake in one evaluation
# (`config.pantheros.deployment`). What it adds to the system itself: one
# path unit and one oneshot unit per key (`pantheros-key-<name>`, active
# while the key's file exists, for services to order after) and curl when
# HTTP health checks are declared.
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

    factsFile = mkOption {
      type = types.nullOr types.path;
      default = null;
      example = lib.literalExpression "./facts.json";
      description = ''
        The host's facts file: what the machines decided, recorded by
        pantheros (`pantheros up`, `provision create`, `provision install`,
        `pantheros facts HOST --refresh`) with where each came from and when, such
        as the server's id and addresses and the SSH host key pantheros made.
        Commit it like `flake.lock`. It need not exist yet. Its values are
        {option}`pantheros.deployment.facts`.
      '';
    };

    facts = mkOption {
      type = types.attrsOf types.anything;
      default = if cfg.factsFile == null then { } else import ./lib/facts.nix cfg.factsFile;
      defaultText = lib.literalMD "the values in {option}`pantheros.deployment.factsFile`";
      readOnly = true;
      description = ''
        The recorded facts by name (`serverId`, `ipv4`, `ipv6`, `ipv6Address`,
        `ipv6Gateway`, `hostKey`, …), for the host's configuration to read,
        e.g. `address = [ (config.pantheros.deployment.facts.ipv6Address or example) ];`
        with a placeholder whose `fromFact` names the fact.
      '';
    };

    recordFacts = mkOption {
      type = types.attrsOf types.str;
      default = { };
      example = {
        wireguardPublicKey = "cat /var/lib/wireguard/wg0.key.pub";
      };
      description = ''
        Facts read back from the host after each successful deploy: a shell
        command per fact, run on the host as root, whose output (trimmed)
        pantheros records in {option}`pantheros.deployment.factsFile` with
        the source "host". An empty output records nothing. The Flashpods
        WireGuard module records the host's WireGuard public key this way,
        where the other side of the tunnel reads it.
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
            fromFact = mkOption {
              type = types.nullOr types.str;
              default = null;
              example = "ipv6Address";
              description = ''
                The fact that fills it, when the value is one the machines
                decide (an address, a key) rather than one the user knows.
                `pantheros up` and `provision create` do not refuse such a
                placeholder (they record the fact); `deploy` names the
                command that records it.
              '';
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
        `filled` comparing the value to the example, or for a value the
        machines decide, with `fromFact` naming the recorded fact.
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
        `pantheros provision create` (and `pantheros up`), which read {option}`pantheros.deployment.hetzner`.
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

    buildHost = mkOption {
      type = types.nullOr types.str;
      default = null;
      example = "root@builder.example.org";
      description = ''
        Build this host's system on that machine (an ssh destination,
        reached with {option}`pantheros.deployment.sshOptions`) and copy it
        from there to the host: the deployer's store never holds the
        closure. `deploy --build-host` overrides it for one run.
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

    cache = mkOption {
      type = types.nullOr (
        types.submodule {
          options = {
            url = mkOption {
              type = types.str;
              example = "http://cache.example.org:8080";
              description = "The binary cache the host substitutes its system from.";
            };
            upload = mkOption {
              type = types.nullOr types.str;
              default = null;
              example = "ssh://cache.example.org";
              description = ''
                Where the deploying machine uploads (a Nix store URI): the
                store the cache at {option}`pantheros.deployment.cache.url`
                serves. `null`: the same URL.
              '';
            };
            publicKey = mkOption {
              type = types.str;
              example = "cache.example.org-1:AAAA…";
              description = "The cache's public key; the host trusts it (`nix.settings.trusted-public-keys`).";
            };
            secretKeyFile = mkOption {
              type = types.nullOr types.str;
              default = null;
              example = "/home/me/.config/nix/cache-secret-key";
              description = ''
                The key uploads are signed with: a file on the deploying
                machine (an absolute path as a string, so it never enters the
                store). `null`: uploads are not signed (the cache signs).
              '';
            };
          };
        }
      );
      default = null;
      description = ''
        Fan-out through a binary cache: the deploy uploads each store path
        once, to this cache, and every host substitutes its closure from it
        in parallel instead of receiving it from the deploying machine
        (`deploy --cache URL` sets the URL for one run). The host is given
        the cache as a substituter with its key as trusted; a host that does
        not trust the key (yet) gets a direct copy, with a note.
      '';
    };

    rebootTimeout = mkOption {
      type = types.ints.positive;
      default = 600;
      description = ''
        Seconds `pantheros deploy --reboot` waits for the host to answer
        again after it reboots (a trial boot the watchdog ends, and the boot
        back into the old system, included). A host silent for longer is
        reported, never waited on for good.
      '';
    };

    rebootConfirmTimeout = mkOption {
      type = types.ints.positive;
      default = 180;
      description = ''
        Seconds the boot watchdog gives the deployer, on a trial boot of
        `pantheros deploy --reboot`, to prove the new system (a fresh SSH
        connection and the health checks). Without that proof in time it
        reboots, and the old system, still the boot loader's default, comes
        back by itself: no SSH and no provider API needed.
      '';
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

    keys = mkOption {
      type = types.attrsOf (
        types.submodule (
          { name, config, ... }:
          {
            options = {
              keyFile = mkOption {
                # A path literal is accepted by the type only to be refused
                # with a reason: Nix would copy it into the world-readable store.
                type = types.nullOr (types.either types.str types.path);
                default = null;
                apply =
                  v:
                  if builtins.isPath v then
                    throw ''
                      pantheros.deployment.keys.${name}.keyFile is a Nix path literal (${toString v}): Nix would copy the secret into the world-readable /nix/store. Give the path as a string instead: keyFile = "${toString v}";''
                  else
                    v;
                example = "/home/me/secrets/flashpods.json";
                description = ''
                  File on the deploying machine whose content is the key, as a
                  string (a Nix path literal is refused: it would put the
                  secret in the Nix store). Give exactly one of `keyFile` and
                  `keyCommand`.
                '';
              };
              keyCommand = mkOption {
                type = types.nullOr (types.nonEmptyListOf types.str);
                default = null;
                example = [
                  "pass"
                  "show"
                  "flashpods/secrets.json"
                ];
                description = ''
                  Command (argv) run on the deploying machine, with the
                  terminal for a passphrase prompt; its standard output is
                  the key. There is no inline text: a value written here
                  would be part of the evaluation.
                '';
              };
              destDir = mkOption {
                type = types.strMatching "/[A-Za-z0-9@_./-]*";
                default = "/run/keys";
                description = ''
                  Directory on the host. `/run/keys` is gone after a reboot
                  (`pantheros keys upload` writes the keys again); use
                  `/var/lib/pantheros/keys` for keys that must survive one.
                '';
              };
              name = mkOption {
                type = types.strMatching "[A-Za-z0-9@_-][A-Za-z0-9@_.-]*";
                default = name;
                description = "File name in {option}`destDir`.";
              };
              path = mkOption {
                type = types.str;
                readOnly = true;
                default = "${config.destDir}/${config.name}";
                defaultText = lib.literalExpression ''"''${destDir}/''${name}"'';
                description = "Where the key is on the host (for services to read).";
              };
              user = mkOption {
                type = types.str;
                default = "root";
                description = "Owner of the file on the host.";
              };
              group = mkOption {
                type = types.str;
                default = "root";
                description = "Group of the file on the host.";
              };
              permissions = mkOption {
                type = types.strMatching "[0-7]{3,4}";
                default = "0600";
                description = "Mode of the file, from its first byte.";
              };
              uploadAt = mkOption {
                type = types.enum [
                  "pre-activation"
                  "post-activation"
                ];
                default = "pre-activation";
                description = ''
                  Write the key before the activation (the default), or only
                  after a switch that was confirmed and passed its health
                  checks (never after a rollback): for an owner that the new
                  system creates.
                '';
              };
            };
          }
        )
      );
      default = { };
      example = lib.literalExpression ''
        {
          flashpods-secrets = {
            keyCommand = [ "pass" "show" "flashpods/secrets.json" ];
            destDir = "/var/lib/pantheros/keys";
          };
        }
      '';
      description = ''
        Secrets pantheros writes to the host from the deploying machine,
        never through the Nix store. Each gets a `pantheros-key-<name>`
        service that is active once its file exists (started by a path unit,
        restarted by pantheros after each upload): order a service after it
        and make it `partOf` it to restart when the key changes.
      '';
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

      ipv6Only = mkOption {
        type = types.bool;
        default = false;
        description = ''
          Create the server without a public IPv4 address (it costs less);
          it is then reached at the first address of its routed /64
          (the `ipv6Address` fact).
        '';
      };
    };
  };

  config = {
    # A host pantheros created is reached at the address it recorded.
    # (An IPv6-only server at the first address of its /64.)
    pantheros.deployment.targetHost =
      if cfg.facts ? ipv4 then
        lib.mkDefault cfg.facts.ipv4
      else if cfg.facts ? ipv6Address then
        lib.mkDefault (builtins.head (lib.splitString "/" cfg.facts.ipv6Address))
      else
        lib.mkIf false null;

    # The deploy's binary cache: the host substitutes from it.
    nix.settings = lib.mkIf (cfg.cache != null) {
      extra-substituters = [ cfg.cache.url ];
      extra-trusted-public-keys = [ cfg.cache.publicKey ];
    };

    # HTTP health checks are fetched on the host itself, with curl.
    environment.systemPackages = lib.mkIf (cfg.healthChecks.http != [ ]) [ pkgs.curl ];

    # One unit per key, active while its file exists.
    systemd.paths = lib.mapAttrs' (
      _: k:
      lib.nameValuePair "pantheros-key-${k.name}" {
        description = "Watch for pantheros key ${k.name}";
        wantedBy = [ "paths.target" ];
        pathConfig = {
          PathExists = k.path;
          Unit = "pantheros-key-${k.name}.service";
        };
      }
    ) cfg.keys;
    # The boot watchdog of `pantheros deploy --reboot`: on a trial boot (a
    # marker pantheros wrote before the reboot) it waits for the deployer's
    # confirmation and otherwise reboots into the default system. Every
    # other boot it exits at once.
    systemd.services = {
      pantheros-boot-watchdog = {
        description = "pantheros boot watchdog (keeps a trial boot only once the deployer proves it)";
        wantedBy = [ "multi-user.target" ];
        after = [
          "local-fs.target"
          "systemd-tmpfiles-setup.service"
        ];
        before = [ "shutdown.target" ];
        conflicts = [ "shutdown.target" ];
        unitConfig.DefaultDependencies = false;
        serviceConfig = {
          Type = "simple";
          ExecStart = "${pkgs.runtimeShell} ${./lib/boot-watchdog.sh} /var/lib/pantheros ${toString cfg.rebootConfirmTimeout}";
        };
      };
    }
    // lib.mapAttrs' (
      _: k:
      lib.nameValuePair "pantheros-key-${k.name}" {
        description = "pantheros key ${k.name} (${k.path})";
        unitConfig.ConditionPathExists = k.path;
        serviceConfig = {
          Type = "oneshot";
          RemainAfterExit = true;
          ExecStart = "${pkgs.coreutils}/bin/test -e ${k.path}";
        };
      }
    ) cfg.keys;

    assertions = [
      {
        assertion = lib.all (n: !lib.hasPrefix "hetzner.cloud/" n) (lib.attrNames cfg.hetzner.labels);
        message = "pantheros.deployment.hetzner.labels: the `hetzner.cloud/` prefix is reserved by Hetzner.";
      }
      {
        assertion = lib.all (k: (k.keyFile == null) != (k.keyCommand == null)) (lib.attrValues cfg.keys);
        message = "pantheros.deployment.keys: give each key exactly one of keyFile and keyCommand (${
          lib.concatStringsSep ", " (
            lib.attrNames (lib.filterAttrs (_: k: (k.keyFile == null) == (k.keyCommand == null)) cfg.keys)
          )
        }).";
      }
      {
        assertion = lib.all (k: k.keyFile == null || lib.hasPrefix "/" k.keyFile) (lib.attrValues cfg.keys);
        message = "pantheros.deployment.keys: keyFile must be an absolute path on the deploying machine.";
      }
      {
        assertion =
          cfg.cache == null || cfg.cache.secretKeyFile == null || lib.hasPrefix "/" cfg.cache.secretKeyFile;
        message = "pantheros.deployment.cache.secretKeyFile must be an absolute path on the deploying machine.";
      }
      {
        assertion = lib.hasPrefix "/" cfg.profile;
        message = "pantheros.deployment.profile must be an absolute path, not `${cfg.profile}`.";
      }
    ];
  };
}
