# The devhost package: the Rust workspace built with nixpkgs' Rust builder
# from this checkout and its Cargo.lock. Installs `devhost` (agent and
# native CLI) and the compatible front-ends `fc-build-dev-container`,
# `fc-devhost` and `nixos-container`.
{ lib, rustPlatform }:

let
  manifest = builtins.fromTOML (builtins.readFile ../agent/Cargo.toml);
in
rustPlatform.buildRustPackage {
  pname = "devhost";
  version = manifest.package.version;

  src = lib.fileset.toSource {
    root = ../.;
    fileset = lib.fileset.unions [
      ../Cargo.toml
      ../Cargo.lock
      ../agent
      ../props
      ../provision-dsl
    ];
  };

  cargoLock.lockFile = ../Cargo.lock;
  cargoBuildFlags = [ "--workspace" ];

  # The test suite needs root, systemd-nspawn, nftables and Nix on the
  # host; the flake's VM check runs the package for real instead. The pure
  # unit tests run here.
  cargoTestFlags = [ "--workspace" "--lib" ];

  meta = {
    description = "Node agent for NixOS development hosts: systemd-nspawn containers from pinned channels, with an HTTPS edge";
    license = lib.licenses.mit;
    platforms = lib.platforms.linux;
    mainProgram = "devhost";
  };
}
