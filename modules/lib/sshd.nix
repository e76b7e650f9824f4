# The SSH hardening every host shares, as services.openssh.settings, and its
# sshd_config rendering (for `sshd -t`).
rec {
  settings = {
    PasswordAuthentication = false;
    KbdInteractiveAuthentication = false;
    PermitRootLogin = "prohibit-password";
    X11Forwarding = false;
  };

  render =
    s:
    builtins.concatStringsSep "" (
      map (
        k:
        let
          v = s.${k};
        in
        "${k} ${
          if builtins.isBool v then
            (if v then "yes" else "no")
          else if builtins.isList v then
            builtins.concatStringsSep " " v
          else
            toString v
        }\n"
      ) (builtins.attrNames s)
    );

  text = render settings;
}
