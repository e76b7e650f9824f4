# rsync daemon for Flashpods job uploads: one module, bound to the
# WireGuard address, open to the laptop only, writing as the flashpods user.
{
  address,
  allow,
  path ? "/tmp/flashpods/uploads",
  user ? "flashpods",
  group ? "flashpods",
  moduleName ? "uploads",
  port ? 873,
  maxConnections ? 4,
  useChroot ? true,
  # Only for the standalone file (the NixOS module manages these itself).
  pidFile ? null,
  logFile ? null,
}:
let
  ini = import ./ini.nix;
in
rec {
  # For services.rsyncd.settings (the NixOS module adds `port` itself).
  settings = {
    globalSection = {
      inherit address;
      "use chroot" = useChroot;
      "max connections" = maxConnections;
      "reverse lookup" = false;
    };
    sections.${moduleName} = {
      inherit path;
      comment = "Flashpods job uploads";
      "read only" = false;
      uid = user;
      gid = group;
      "hosts allow" = builtins.concatStringsSep " " allow;
      "hosts deny" = "*";
    };
  };

  # rsyncd.conf for `rsync --daemon --config=…`.
  text = ini {
    globalSection = settings.globalSection // {
      port = toString port;
      "pid file" = pidFile;
      "log file" = logFile;
    };
    inherit (settings) sections;
  };
}
