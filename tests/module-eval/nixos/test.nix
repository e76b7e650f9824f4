# Stand-in for nixpkgs' testers.runNixOSTest (nixos/lib/testing/): every
# node is evaluated as a NixOS system with the options the test framework
# adds (nixos/modules/virtualisation/qemu-vm.nix, declared typed here), and
# the test script is kept so the flake tier can check that every unit it
# waits for exists on its node. The result is a derivation that is
# evaluated, never built (a VM test needs KVM and nixpkgs).
{
  lib,
  pkgs,
  nixosSystem,
}:
{
  name,
  nodes,
  testScript,
  ...
}:
let
  inherit (lib) types;
  inherit (import ../stand-in.nix lib) opt;
  qemuVm = {
    options.virtualisation = {
      memorySize = opt types.ints.positive 1024;
      cores = opt types.ints.positive 1;
      diskSize = opt types.ints.positive 1024;
      writableStore = opt types.bool true;
      graphics = opt types.bool true;
      vlans = opt (types.listOf types.ints.unsigned) [ 1 ];
    };
    # qemu-vm.nix mounts the root file system and boots without a loader.
    config = {
      fileSystems."/" = lib.mkOverride 10 {
        device = "tmpfs";
        fsType = "tmpfs";
      };
      boot.loader.grub.device = lib.mkOverride 10 "nodev";
    };
  };
  evaluated = builtins.mapAttrs (
    nodeName: module:
    nixosSystem {
      modules = [
        module
        qemuVm
        {
          networking.hostName = lib.mkDefault nodeName;
          nixpkgs.hostPlatform = lib.mkDefault pkgs.system;
        }
      ];
    }
  ) nodes;
  script = if builtins.isFunction testScript then testScript { nodes = builtins.mapAttrs (_: n: n.config) evaluated; } else testScript;
  # `node.wait_for_unit("unit")` calls in the script, as [ node unit ].
  waits = lib.concatMap (
    line:
    let
      m = builtins.match ''[[:space:]]*([A-Za-z0-9_]+)\.wait_for_unit\("([^"]+)".*'' line;
    in
    lib.optional (m != null) m
  ) (lib.splitString "\n" script);
  # The driver's Machine methods (nixos/lib/test-driver/src/test_driver/
  # machine/__init__.py, BaseMachine and QemuMachine, as read): a call the
  # driver does not have fails the real test only once a VM has booted.
  driverMethods = [
    "systemctl"
    "wait_for_unit"
    "get_unit_info"
    "get_unit_property"
    "require_unit_state"
    "succeed"
    "fail"
    "wait_until_succeeds"
    "wait_until_fails"
    "sleep"
    "wait_for_file"
    "wait_for_open_port"
    "wait_for_open_unix_socket"
    "wait_for_closed_port"
    "start_job"
    "stop_job"
    "execute"
    "copy_from_machine"
    "copy_from_vm"
    "copy_from_host"
    "copy_from_host_via_shell"
    "log"
    "nested"
    "start"
    "shutdown"
    "crash"
    "reboot"
    "wait_for_shutdown"
    "send_monitor_command"
    "get_tty_text"
    "wait_until_tty_matches"
    "send_chars"
    "send_key"
    "screenshot"
    "wait_for_text"
    "wait_for_console_text"
    "wait_for_x"
    "forward_port"
    "block"
    "unblock"
    "shell_interact"
  ];
  # `node.method(` calls in the script (the last on each line), as [ prefix node method ].
  calls = lib.concatMap (
    line:
    let
      m = builtins.match ''(.*[^A-Za-z0-9_.])?([A-Za-z0-9_]+)\.([a-z_]+)\(.*'' line;
    in
    lib.optional (m != null && evaluated ? ${builtins.elemAt m 1}) m
  ) (lib.splitString "\n" script);
in
derivation {
  inherit name;
  inherit (pkgs) system;
  builder = "/bin/sh";
  args = [
    "-c"
    "echo 'stand-in VM test: evaluated, never run' >&2; exit 1"
  ];
}
// {
  nodes = evaluated;
  testScript = script;
  report = {
    nodes = builtins.mapAttrs (_: n: n.report) evaluated;
    waits = map (w: {
      node = builtins.elemAt w 0;
      unit = builtins.elemAt w 1;
      exists =
        let
          n = builtins.elemAt w 0;
        in
        evaluated ? ${n} && builtins.elem (builtins.elemAt w 1) evaluated.${n}.report.units.known;
    }) waits;
    calls = map (c: {
      node = builtins.elemAt c 1;
      method = builtins.elemAt c 2;
      known = builtins.elem (builtins.elemAt c 2) driverMethods;
    }) calls;
  };
}
