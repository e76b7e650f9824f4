# Option types shared by the modules (these need nixpkgs' lib, unlike the
# renderers beside them).
lib: {
  # A secret's or key's file: a path string, absolute, outside the Nix
  # store. A Nix path literal or a store path is refused by the type: the
  # file would be copied into, or read from, the world-readable store.
  secretPath = lib.types.pathWith {
    inStore = false;
    absolute = true;
  };
}
