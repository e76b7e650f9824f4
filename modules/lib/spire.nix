# SPIRE server and agent configuration for the Flashpods host, and the
# registration entries that identify its containers.
{
  trustDomain ? "flashpods.local",
  # The agent's own SPIFFE ID, used as parent of the workload entries.
  hostId ? "spiffe://flashpods.local/host",
  bindAddress ? "127.0.0.1",
  bindPort ? 8081,
  serverAddress ? "127.0.0.1",
  # Podman's Docker-compatible API socket, for the docker workload attestor.
  containerSocket ? "/run/flashpods/podman.sock",
  serverSocketPath ? "/run/spire/server/private/api.sock",
  agentSocketPath ? "/run/spire/agent/public/api.sock",
  joinTokenFile ? "$CREDENTIALS_DIRECTORY/join_token",
  trustBundlePath ? "$CREDENTIALS_DIRECTORY/trust_bundle",
  # Workload types: each becomes spiffe://<td>/<type>, selected by the
  # container label flashpods-job-type=<type>.
  jobTypes ? [
    "worker"
    "agent"
  ],
  labelKey ? "flashpods-job-type",
}:
let
  hcl = import ./hcl.nix;
in
rec {
  serverSettings = {
    server = {
      trust_domain = trustDomain;
      bind_address = bindAddress;
      bind_port = bindPort;
      socket_path = serverSocketPath;
      data_dir = "$STATE_DIRECTORY";
      log_level = "INFO";
    };
    plugins = {
      DataStore.sql.plugin_data = {
        database_type = "sqlite3";
        connection_string = "$STATE_DIRECTORY/datastore.sqlite3";
      };
      KeyManager.disk.plugin_data = {
        keys_path = "$STATE_DIRECTORY/keys.json";
      };
      NodeAttestor.join_token.plugin_data = { };
    };
  };

  agentSettings = {
    agent = {
      trust_domain = trustDomain;
      server_address = serverAddress;
      server_port = bindPort;
      socket_path = agentSocketPath;
      data_dir = "$STATE_DIRECTORY";
      join_token_file = joinTokenFile;
      trust_bundle_path = trustBundlePath;
      trust_bundle_format = "pem";
      log_level = "INFO";
    };
    plugins = {
      KeyManager.disk.plugin_data = {
        directory = "$STATE_DIRECTORY";
      };
      NodeAttestor.join_token.plugin_data = { };
      WorkloadAttestor.unix.plugin_data = { };
      WorkloadAttestor.docker.plugin_data = {
        docker_socket_path = "unix://${containerSocket}";
      };
    };
  };

  serverHCL = hcl serverSettings;
  agentHCL = hcl agentSettings;

  entries = map (t: {
    spiffeID = "spiffe://${trustDomain}/${t}";
    parentID = hostId;
    selectors = [ "docker:label:${labelKey}:${t}" ];
  }) jobTypes;

  # One line per entry: "<spiffeID> <parentID> <selector>[,<selector>…]",
  # the desired state the reconcile script converges to.
  entriesText = builtins.concatStringsSep "" (
    map (e: "${e.spiffeID} ${e.parentID} ${builtins.concatStringsSep "," e.selectors}\n") entries
  );
}
