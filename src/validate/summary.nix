# What `pantheros validate` checks a Flashpods host against: the host's own
# configuration, read in the same evaluation as its deployment metadata.
# null when the host does not run Flashpods.
c:
let
  f = c.services.flashpods or { enable = false; };
  wg = f.wireguard;
  spire = f.spire;
  serverSettings = c.services.spire.server.settings.server or { };
  agentSettings = c.services.spire.agent.settings.agent or { };
in
if !(f.enable or false) then
  null
else
  {
    inherit (f) user containerNetworks;
    tailscale = c.services.tailscale.enable or false;
    wireguard = {
      inherit (wg) interface address listenPort;
      laptops = builtins.mapAttrs (_: l: { inherit (l) address publicKey; }) wg.laptops;
    };
    api = {
      inherit (f.api) port;
      configured = f.api.package != null;
    };
    rsync = {
      inherit (f.rsync)
        enable
        address
        port
        moduleName
        allow
        ;
    };
    firewall = {
      inherit (f.firewall) enable containerUsers;
    };
    podmanSocket = "${f.runDir}/podman.sock";
    spire =
      if !spire.enable then
        null
      else
        {
          inherit (spire)
            trustDomain
            hostId
            labelKey
            jobTypes
            ;
          entries = map (e: { inherit (e) spiffeID parentID selectors; }) spire.entries;
          bin = "${spire.package}/bin";
          serverSocket = serverSettings.socket_path or "/run/spire/server/private/api.sock";
          agentSocket = agentSettings.socket_path or "/run/spire/agent/public/api.sock";
        };
    tokenService =
      if f.tokenService.package == null then
        null
      else
        {
          socket = "${f.runDir}/token.sock";
          inherit (f.tokenService) audience;
        };
  }
