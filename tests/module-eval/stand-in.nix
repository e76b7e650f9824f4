# How the stand-ins declare an option: `opt TYPE DEFAULT`, or `req TYPE` for
# one that nixpkgs (or disko) declares without a default.
lib: {
  opt =
    type: default:
    lib.mkOption {
      inherit type default;
      description = "stand-in";
    };
  req =
    type:
    lib.mkOption {
      inherit type;
      description = "stand-in (no default, as upstream)";
    };
}
