# Typed stand-ins for the NixOS options that pantheros' modules, the example
# hosts and the VM tests set or read: the same paths, types and defaults as
# nixpkgs (nixos-26.05) declares them, each group citing its nixpkgs file
# (see ../../shared/reference/nixpkgs-options.json for what was read). An
# option that is not declared here does not exist for the evaluation, so a
# misspelt option or a wrong type fails here as it would in
# `nix flake check` on a user's machine.
#
# Only the declarations and the few behaviours a build relies on are here
# (see ./system.nix); nothing of nixpkgs is copied.
{
  config,
  lib,
  pkgs,
  ...
}:
let
  inherit (lib) mkOption types;

  inherit (import ../stand-in.nix lib) opt req;
  bool = default: opt types.bool default;
  enable = bool false;
  strList = opt (types.listOf types.str) [ ];

  # nixos/lib/systemd-lib.nix: unitNameType.
  unitNameType = types.strMatching "[a-zA-Z0-9@%:_.\\-]+[.](service|socket|device|mount|automount|swap|target|path|timer|scope|slice)";
  unitList = opt (types.listOf unitNameType) [ ];

  # nixos/lib/systemd-unit-options.nix: a unit option is a primitive or a
  # list of them; lists from several definitions are concatenated.
  unitOption = lib.mkOptionType {
    name = "systemd option";
    check =
      v:
      let
        atom = x: builtins.isString x || builtins.isInt x || builtins.isBool x || builtins.isPath x || lib.isDerivation x || builtins.isFloat x;
      in
      atom v || (builtins.isList v && lib.all atom v);
    merge =
      loc: defs:
      let
        defs' = lib.filterOverrides defs;
      in
      if lib.any (d: builtins.isList d.value) defs' then
        lib.concatMap (d: lib.toList d.value) defs'
      else
        lib.mergeEqualOption loc defs';
  };
  unitAttrs = opt (types.attrsOf unitOption) { };

  # nixos/lib/systemd-unit-options.nix: the options every unit has.
  commonUnitOptions = {
    enable = bool true;
    description = opt types.singleLineStr "";
    documentation = strList;
    requires = unitList;
    wants = unitList;
    upholds = unitList;
    after = unitList;
    before = unitList;
    bindsTo = unitList;
    partOf = unitList;
    conflicts = unitList;
    requisite = unitList;
    wantedBy = unitList;
    requiredBy = unitList;
    upheldBy = unitList;
    aliases = unitList;
    onFailure = unitList;
    onSuccess = unitList;
    unitConfig = unitAttrs;
    restartTriggers = opt (types.listOf types.unspecified) [ ];
    reloadTriggers = opt (types.listOf types.unspecified) [ ];
    startLimitBurst = opt (types.nullOr types.int) null;
    startLimitIntervalSec = opt (types.nullOr types.int) null;
  };
  serviceOptions = commonUnitOptions // {
    serviceConfig = unitAttrs;
    environment = opt (types.attrsOf (
      types.nullOr (
        types.oneOf [
          types.str
          types.path
          types.package
        ]
      )
    )) { };
    path = opt (types.listOf (types.oneOf [
      types.package
      types.str
    ])) [ ];
    script = opt types.lines "";
    preStart = opt types.lines "";
    postStart = opt types.lines "";
    preStop = opt types.lines "";
    postStop = opt types.lines "";
    reload = opt types.lines "";
    scriptArgs = opt types.str "";
    restartIfChanged = bool true;
    reloadIfChanged = bool false;
    stopIfChanged = bool true;
    startAt = opt (types.either types.str (types.listOf types.str)) [ ];
    confinement.enable = bool false;
  };
  timerOptions = commonUnitOptions // {
    timerConfig = unitAttrs;
  };
  socketOptions = commonUnitOptions // {
    socketConfig = unitAttrs;
    listenStreams = strList;
    listenDatagrams = strList;
  };
  targetOptions = commonUnitOptions;
  pathOptions = commonUnitOptions // {
    pathConfig = unitAttrs;
  };
  units = options: opt (types.attrsOf (types.submodule { inherit options; })) { };

  # nixos/modules/system/boot/systemd/tmpfiles.nix: settings.<config>.<path>.<type>.
  tmpfilesEntry = types.submodule (
    { name, ... }:
    {
      options = {
        type = opt types.str name;
        mode = opt types.str "-";
        user = opt types.str "-";
        group = opt types.str "-";
        age = opt types.str "-";
        argument = opt types.str "";
      };
    }
  );

  # nixos/modules/config/users-groups.nix.
  subIdRange =
    start:
    types.submodule {
      options = {
        ${start} = req types.int;
        count = opt types.int 1;
      };
    };
  userModule = types.submodule (
    { name, ... }:
    {
      options = {
        name = opt types.str name;
        uid = opt (types.nullOr types.int) null;
        isSystemUser = bool false;
        isNormalUser = bool false;
        group = opt types.str "";
        extraGroups = strList;
        description = opt types.str "";
        home = opt types.str "/var/empty";
        homeMode = opt (types.strMatching "[0-7]{1,5}") "700";
        createHome = bool false;
        shell = opt (types.nullOr (types.either types.shellPackage types.path)) null;
        linger = opt (types.nullOr types.bool) null;
        subUidRanges = opt (types.listOf (subIdRange "startUid")) [ ];
        subGidRanges = opt (types.listOf (subIdRange "startGid")) [ ];
        autoSubUidGidRange = bool false;
        hashedPassword = opt (types.nullOr types.str) null;
        hashedPasswordFile = opt (types.nullOr types.str) null;
        initialPassword = opt (types.nullOr types.str) null;
        packages = opt (types.listOf types.package) [ ];
        # nixos/modules/services/networking/ssh/sshd.nix extends users.users.
        openssh.authorizedKeys = {
          keys = opt (types.listOf types.singleLineStr) [ ];
          keyFiles = opt (types.listOf types.path) [ ];
        };
      };
    }
  );
  groupModule = types.submodule (
    { name, ... }:
    {
      options = {
        name = opt types.str name;
        gid = opt (types.nullOr types.int) null;
        members = strList;
      };
    }
  );

  # pkgs/pkgs-lib/formats.nix: the atoms of the INI and key-value formats.
  iniAtom = types.nullOr (
    types.oneOf [
      types.bool
      types.int
      types.float
      types.str
    ]
  );
  # pkgs/pkgs-lib/formats.nix: hcl1 (as JSON): any JSON value.
  hclValue =
    types.nullOr (
      types.oneOf [
        types.bool
        types.int
        types.float
        types.str
        types.path
        (types.attrsOf hclValue)
        (types.listOf hclValue)
      ]
    )
    // {
      description = "HCL value";
    };
  freeform =
    freeformType: options:
    opt (types.submodule {
      inherit freeformType options;
    }) { };

  # nixos/modules/services/networking/wireguard.nix: a peer.
  wgPeer = types.submodule {
    options = {
      name = opt (types.nullOr types.str) null;
      publicKey = req types.singleLineStr;
      presharedKeyFile = opt (types.nullOr types.str) null;
      allowedIPs = req (types.listOf types.str);
      endpoint = opt (types.nullOr types.str) null;
      persistentKeepalive = opt (types.nullOr types.int) null;
      dynamicEndpointRefreshSeconds = opt types.int 0;
      dynamicEndpointRefreshRestartSeconds = opt (types.nullOr types.ints.unsigned) null;
    };
  };
  wgInterface = types.submodule {
    options = {
      ips = strList;
      listenPort = opt (types.nullOr types.int) null;
      privateKey = opt (types.nullOr types.str) null;
      privateKeyFile = opt (types.nullOr types.str) null;
      generatePrivateKeyFile = bool false;
      peers = opt (types.listOf wgPeer) [ ];
      allowedIPsAsRoutes = bool true;
      mtu = opt (types.nullOr types.int) null;
      preSetup = opt (types.either types.str (types.listOf types.str)) "";
      postSetup = opt (types.either types.str (types.listOf types.str)) "";
    };
  };

  # nixos/modules/services/networking/firewall.nix: per-interface ports.
  firewallPorts = {
    allowedTCPPorts = opt (types.listOf types.port) [ ];
    allowedUDPPorts = opt (types.listOf types.port) [ ];
    allowedTCPPortRanges = opt (types.listOf (types.attrsOf types.port)) [ ];
    allowedUDPPortRanges = opt (types.listOf (types.attrsOf types.port)) [ ];
  };

  # nixos/modules/tasks/filesystems.nix.
  fileSystem = types.submodule (
    { name, ... }:
    {
      options = {
        mountPoint = opt types.str name;
        device = opt (types.nullOr types.str) null;
        label = opt (types.nullOr types.str) null;
        fsType = opt types.str "auto";
        options = opt (types.nonEmptyListOf types.str) [ "defaults" ];
        neededForBoot = bool false;
        depends = strList;
      };
    }
  );

  # nixos/modules/virtualisation/podman/default.nix wraps the package with
  # its extraPackages; the final package is what the option yields.
  podmanPackage = pkgs.podman;
in
{
  options = {
    # nixos/modules/misc/assertions.nix
    assertions = mkOption {
      type = types.listOf types.unspecified;
      internal = true;
      default = [ ];
      description = "stand-in";
    };
    warnings = mkOption {
      type = types.listOf types.str;
      internal = true;
      default = [ ];
      description = "stand-in";
    };

    # nixos/modules/config/system-path.nix, nixos/modules/system/etc/etc.nix
    environment = {
      systemPackages = opt (types.listOf types.package) [ ];
      etc = opt (types.attrsOf (
        types.submodule (
          { name, ... }:
          {
            options = {
              enable = bool true;
              target = opt types.str name;
              text = opt (types.nullOr types.lines) null;
              source = opt (types.nullOr types.path) null;
              mode = opt types.str "symlink";
              user = opt types.str "+0";
              group = opt types.str "+0";
              uid = opt types.int 0;
              gid = opt types.int 0;
            };
          }
        )
      )) { };
      variables = opt (types.attrsOf (types.either types.str (types.listOf types.str))) { };
    };

    networking = {
      # nixos/modules/tasks/network-interfaces.nix
      hostName = opt (types.strMatching "^$|^[[:alnum:]]([[:alnum:]_-]{0,61}[[:alnum:]])?$") "nixos";
      domain = opt (types.nullOr types.str) null;
      useDHCP = bool true;
      useNetworkd = bool false;
      nameservers = strList;
      # nixos/modules/services/networking/networkmanager.nix
      networkmanager.enable = enable;
      # nixos/modules/services/networking/firewall.nix
      firewall = firewallPorts // {
        enable = bool true;
        trustedInterfaces = strList;
        checkReversePath = opt (types.either types.bool (
          types.enum [
            "strict"
            "loose"
          ]
        )) true;
        interfaces = opt (types.attrsOf (types.submodule { options = firewallPorts; })) { };
        extraInputRules = opt types.lines "";
        logRefusedConnections = bool true;
      };
      # nixos/modules/services/networking/nftables.nix
      nftables = {
        enable = enable;
        flushRuleset = bool (config.networking.nftables.ruleset != "");
        ruleset = opt types.lines "";
        checkRuleset = bool true;
        tables = opt (types.attrsOf (
          types.submodule (
            { name, ... }:
            {
              options = {
                enable = bool true;
                name = opt types.str name;
                family = req (
                  types.enum [
                    "ip"
                    "ip6"
                    "inet"
                    "arp"
                    "bridge"
                    "netdev"
                  ]
                );
                content = opt types.lines "";
              };
            }
          )
        )) { };
      };
      # nixos/modules/services/networking/wireguard.nix
      wireguard = {
        enable = bool (config.networking.wireguard.interfaces != { });
        useNetworkd = bool config.networking.useNetworkd;
        interfaces = opt (types.attrsOf wgInterface) { };
      };
    };

    systemd = {
      # nixos/modules/system/boot/systemd.nix
      services = units serviceOptions;
      timers = units timerOptions;
      sockets = units socketOptions;
      targets = units targetOptions;
      paths = units pathOptions;
      # nixos/modules/system/boot/systemd/user.nix
      user.services = units serviceOptions;
      # nixos/modules/system/boot/systemd/tmpfiles.nix
      tmpfiles = {
        rules = strList;
        settings = opt (types.attrsOf (types.attrsOf (types.attrsOf tmpfilesEntry))) { };
      };
      # nixos/modules/system/boot/networkd.nix
      network = {
        enable = bool config.networking.useNetworkd;
        networks = opt (types.attrsOf (
          types.submodule {
            options = {
              enable = bool true;
              matchConfig = unitAttrs;
              networkConfig = unitAttrs;
              linkConfig = unitAttrs;
              address = strList;
              gateway = strList;
              dns = strList;
              DHCP = opt (types.nullOr types.str) null;
            };
          }
        )) { };
      };
    };

    # nixos/modules/config/users-groups.nix
    users = {
      mutableUsers = bool true;
      users = opt (types.attrsOf userModule) { };
      groups = opt (types.attrsOf groupModule) { };
    };

    virtualisation = {
      # nixos/modules/virtualisation/podman/default.nix
      podman = {
        enable = enable;
        # internal, not read-only: the final package (pkgs.podman with
        # extraPackages, /run/wrappers and runc), which modules read.
        package = mkOption {
          type = types.package;
          default = podmanPackage;
          internal = true;
          description = "stand-in (nixpkgs: the wrapped pkgs.podman)";
        };
        dockerCompat = bool false;
        dockerSocket.enable = bool false;
        enableNvidia = bool false;
        extraPackages = opt (types.listOf types.package) [ ];
        # pkgs.formats.json's type; Podman's default network is podman0 with
        # 10.88.0.0/16, services.flashpods.containerNetworks' default.
        defaultNetwork.settings = opt (types.attrsOf types.anything) { };
        autoPrune = {
          enable = bool false;
          flags = strList;
          dates = opt types.str "weekly";
        };
      };
      containers = {
        enable = bool config.virtualisation.podman.enable;
        containersConf.settings = opt (types.attrsOf types.anything) { };
      };
    };

    boot = {
      # nixos/modules/system/boot/loader/systemd-boot/systemd-boot.nix
      loader.systemd-boot.enable = enable;
      # nixos/modules/system/boot/loader/efi.nix
      loader.efi = {
        canTouchEfiVariables = bool false;
        efiSysMountPoint = opt types.str "/boot";
      };
      # nixos/modules/system/boot/loader/grub/grub.nix
      loader.grub = {
        enable = bool true;
        device = opt types.str "";
        devices = opt (types.listOf types.str) [ ];
        mirroredBoots = opt (types.listOf types.attrs) [ ];
        efiSupport = bool false;
        efiInstallAsRemovable = bool false;
      };
      # nixos/modules/system/boot/kernel.nix, stage-1.nix
      kernelModules = strList;
      kernelParams = strList;
      initrd.availableKernelModules = strList;
      initrd.kernelModules = strList;
      kernel.sysctl = opt (types.attrsOf (types.nullOr (types.oneOf [
        types.bool
        types.str
        types.int
      ]))) { };
      isContainer = bool false;
    };

    # nixos/modules/tasks/filesystems.nix, nixos/modules/config/swap.nix
    fileSystems = opt (types.attrsOf fileSystem) { };
    swapDevices = opt (types.listOf (
      types.submodule {
        options = {
          device = req types.str;
          randomEncryption.enable = bool false;
        };
      }
    )) [ ];

    # nixos/modules/hardware/all-firmware.nix, cpu/*.nix
    hardware = {
      enableRedistributableFirmware = bool false;
      cpu.intel.updateMicrocode = bool false;
      cpu.amd.updateMicrocode = bool false;
    };

    services = {
      # nixos/modules/services/networking/ssh/sshd.nix
      openssh = {
        enable = enable;
        openFirewall = bool true;
        ports = opt (types.listOf types.port) [ 22 ];
        settings =
          freeform
            (types.attrsOf (
              types.nullOr (
                types.oneOf [
                  types.bool
                  types.int
                  types.str
                  (types.listOf types.str)
                ]
              )
            ))
            {
              PasswordAuthentication = opt (types.nullOr types.bool) true;
              KbdInteractiveAuthentication = opt (types.nullOr types.bool) true;
              PermitRootLogin = opt (types.nullOr (
                types.enum [
                  "yes"
                  "without-password"
                  "prohibit-password"
                  "forced-commands-only"
                  "no"
                ]
              )) "prohibit-password";
              X11Forwarding = opt (types.nullOr types.bool) false;
              UseDns = opt (types.nullOr types.bool) false;
              LogLevel = opt (types.nullOr (
                types.enum [
                  "QUIET"
                  "FATAL"
                  "ERROR"
                  "INFO"
                  "VERBOSE"
                  "DEBUG"
                  "DEBUG1"
                  "DEBUG2"
                  "DEBUG3"
                ]
              )) "INFO";
            };
      };
      # nixos/modules/services/network-filesystems/rsyncd.nix (settings:
      # pkgs/pkgs-lib/formats.nix iniWithGlobalSection)
      rsyncd = {
        enable = enable;
        port = opt types.port 873;
        socketActivated = bool false;
        settings = opt (types.submodule {
          options = {
            globalSection = opt (types.attrsOf iniAtom) { };
            sections = opt (types.attrsOf (types.attrsOf iniAtom)) { };
          };
        }) { };
      };
      # nixos/modules/services/security/spire/{server,agent}.nix (re-read
      # for #14): settings are freeform HCL (pkgs.formats.hcl1) with a few
      # declared keys; `plugins` is freeform too, declaring only
      # NodeAttestor.join_token (null, or a submodule with plugin_data).
      # The server runs with DynamicUser; the agent as its own system user
      # spire-agent. configFile and expandEnv (default true: $VARIABLES in
      # the config are expanded, which the join_token_file path relies on).
      spire =
        let
          hcl = types.attrsOf hclValue;
          plugins = freeform hcl {
            NodeAttestor = freeform hcl {
              join_token = opt (types.nullOr (
                types.submodule {
                  freeformType = hcl;
                  options.plugin_data = opt hcl { };
                }
              )) null;
            };
          };
        in
        {
          server = {
            enable = enable;
            openFirewall = bool false;
            package = opt types.package pkgs.spire;
            settings = freeform hcl {
              server = {
                trust_domain = req types.str;
                data_dir = opt types.str "$STATE_DIRECTORY";
                socket_path = opt types.str "/run/spire/server/private/api.sock";
                bind_address = opt types.str "[::]";
                bind_port = opt types.port 8081;
              };
              plugins = plugins;
            };
            configFile = opt types.path "/nix/store/00000000000000000000000000000000-server.conf";
            expandEnv = bool true;
          };
          agent = {
            enable = enable;
            package = opt types.package pkgs.spire;
            settings = freeform hcl {
              agent = {
                trust_domain = req types.str;
                data_dir = opt types.str "$STATE_DIRECTORY";
                server_address = req types.str;
                server_port = opt types.port 8081;
                socket_path = opt types.path "/run/spire/agent/public/api.sock";
                join_token = opt (types.nullOr types.str) null;
                join_token_file = opt (types.nullOr types.str) null;
              };
              plugins = plugins;
            };
            configFile = opt types.path "/nix/store/00000000000000000000000000000000-agent.conf";
            expandEnv = bool true;
          };
        };
      # nixos/modules/services/networking/tailscale.nix
      tailscale = {
        enable = enable;
        authKeyFile = opt (types.nullOr types.path) null;
        openFirewall = bool false;
        useRoutingFeatures = opt (types.enum [
          "none"
          "client"
          "server"
          "both"
        ]) "none";
      };
      # nixos/modules/virtualisation/qemu-guest-agent.nix
      qemuGuest.enable = enable;
    };

    # nixos/modules/config/nix.nix
    nix.settings = freeform (types.attrsOf (
      types.oneOf [
        types.bool
        types.int
        types.str
        types.path
        (types.listOf (types.oneOf [
          types.str
          types.path
        ]))
      ]
    )) { trusted-users = opt (types.listOf types.str) [ "root" ]; };

    # nixos/modules/config/locale.nix
    time.timeZone = opt (types.nullOr (types.addCheck types.str (s: builtins.match ".* .*" s == null))) null;

    # nixos/modules/misc/nixpkgs.nix
    nixpkgs.hostPlatform = mkOption {
      type = types.either types.str types.attrs;
      apply = lib.systems.elaborate;
      description = "stand-in (no default, as in nixpkgs)";
    };

    system = {
      # nixos/modules/misc/version.nix
      stateVersion = opt types.str "26.05";
      # nixos/modules/system/activation/top-level.nix
      build = mkOption {
        type = types.submoduleWith {
          modules = [ { freeformType = types.lazyAttrsOf types.unspecified; } ];
        };
        default = { };
        description = "stand-in";
      };
    };
  };
}
