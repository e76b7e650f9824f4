{
  lib,
  rustPlatform,
  makeWrapper,
  openssh,
}:
rustPlatform.buildRustPackage {
  pname = "pantheros";
  version = (lib.importTOML ../Cargo.toml).package.version;

  src = lib.fileset.toSource {
    root = ../.;
    fileset = lib.fileset.unions [
      ../Cargo.toml
      ../Cargo.lock
      ../src
      # Cargo.toml names these targets, so they must exist for cargo to read
      # the manifest (they are not built here).
      ../examples/demo.rs
      ../bench/deploy/main.rs
      ../bench/fleet/main.rs
    ];
  };

  cargoLock.lockFile = ../Cargo.lock;

  nativeBuildInputs = [ makeWrapper ];

  # The integration tests build namespace hosts as root; the sandbox runs
  # only the unit tests.
  cargoTestFlags = [ "--lib" ];

  # ssh is needed for remote hosts. Nix itself is taken from the user's PATH
  # (suffix), so that pantheros drives the Nix the user already runs.
  postInstall = ''
    wrapProgram $out/bin/pantheros --suffix PATH : ${lib.makeBinPath [ openssh ]}
  '';

  meta = {
    description = "Deploy, roll back and provision a fleet of NixOS hosts from one flake";
    mainProgram = "pantheros";
    license = lib.licenses.mit;
    platforms = lib.platforms.linux;
  };
}
