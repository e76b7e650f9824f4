# The Flashpods job host on Hetzner Cloud.
{
  config,
  lib,
  modulesPath,
  ...
}:
let
  net = import ../flashpods-network.nix;
  # What Hetzner decides (the server's id and addresses) and the host key
  # pantheros makes at the installation: recorded in ./facts.json by
  # `pantheros up` (or `provision create` and `provision install`). Commit
  # that file like flake.lock. Until it has the address, the documentation
  # address below stands in, and only `up`/`provision create` run.
  facts = config.pantheros.deployment.facts;
  ipv6 = facts.ipv6Address or "2001:db8::1/64";
in
{
  imports = [
    (modulesPath + "/profiles/qemu-guest.nix")
    ../common/vps-disk.nix
    ../../modules/flashpods
  ];

  pantheros.deployment.placeholders = {
    ipv6 = {
      filled = facts ? ipv6Address;
      fromFact = "ipv6Address";
      file = "hosts/hetzner-vps/facts.json";
      description = "the server's IPv6 address in its routed /64, from the Hetzner API";
    };
    # The Flashpods services are yours to package: until they are set the
    # host runs WireGuard, the firewall, Podman, rsync and SPIRE, and
    # `pantheros validate` reports the API and token rows as not run.
    flashpodsApi = {
      filled = config.services.flashpods.api.package != null;
      file = "hosts/hetzner-vps/default.nix";
      description = "the Flashpods API package: services.flashpods.api.package";
    };
    flashpodsTokenService = {
      filled = config.services.flashpods.tokenService.package != null;
      file = "hosts/hetzner-vps/default.nix";
      description = "the Flashpods token service package: services.flashpods.tokenService.package";
    };
  };

  nixpkgs.hostPlatform = "x86_64-linux";

  pantheros.deployment = {
    # targetHost: the server's IPv4 address from ./facts.json (the module's
    # default once the fact is recorded); set it to reach the host otherwise.
    factsFile = ./facts.json;
    provider = "hetzner";
    tags = [
      "server"
      "hetzner"
    ];
    hetzner = {
      # The checklist asks for 8 vCPU and 16 GB: cx43 (Cost-Optimized, EU
      # locations) is the smallest type with both (docs/hetzner.md).
      serverType = "cx43";
      location = "nbg1";
      image = "ubuntu-24.04";
      labels.role = "flashpods";
    };
    healthChecks.services = [
      "sshd.service"
      "wireguard-wg0.service"
      "flashpods-podman.service"
      "rsync.service"
      "spire-server.service"
      "spire-agent.service"
    ];
  };

  boot.loader.grub = {
    efiSupport = true;
    efiInstallAsRemovable = true;
  };
  services.qemuGuest.enable = true;

  networking.useNetworkd = true;
  networking.useDHCP = false;
  systemd.network.networks."10-uplink" = {
    matchConfig.Name = "en*";
    networkConfig.DHCP = "ipv4";
    # Hetzner gives every server a routed /64 but no DHCPv6: set the
    # address the API reports for this server (see docs/hetzner.md).
    address = [ ipv6 ];
    gateway = [ (facts.ipv6Gateway or "fe80::1") ];
  };

  # Tailscale joins with an auth key from your password store, written by
  # pantheros before each activation (never in the store); `pantheros
  # validate` checks the host is joined.
  services.tailscale = {
    enable = true;
    authKeyFile = config.pantheros.deployment.keys.tailscale-auth-key.path;
  };
  pantheros.deployment.keys.tailscale-auth-key = {
    keyCommand = [
      "pass"
      "show"
      "tailscale/auth-key"
    ];
    destDir = "/var/lib/pantheros/keys";
  };

  # The Flashpods job host: WireGuard server, firewall, rootless Podman,
  # rsync, SPIRE, secrets. Set api.package / tokenService.package to run them.
  # The job secrets (Anthropic key, GitHub token, ...) come from the
  # deploying machine's password store: pantheros writes them before each
  # activation, root 0600, where they survive a reboot. Never in the store.
  pantheros.deployment.keys.flashpods-secrets = {
    keyCommand = [
      "pass"
      "show"
      "flashpods/secrets.json"
    ];
    destDir = "/var/lib/pantheros/keys";
  };

  services.flashpods = {
    enable = true;
    secretsFile = config.pantheros.deployment.keys.flashpods-secrets.path;
    wireguard.laptops = lib.filterAttrs (name: _: name == net.laptop) net.peers;
    inherit (net) containerNetworks;
  };
  services.flashpods.wireguard = {
    inherit (net.server) address;
    inherit (net) prefixLength listenPort;
  };
}
