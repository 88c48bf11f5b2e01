{
  description = "devhost: NixOS development containers on one host, with an HTTPS edge";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";

  outputs = { self, nixpkgs }:
    let
      systems = [ "x86_64-linux" "aarch64-linux" ];
      forAll = f: nixpkgs.lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});
    in
    {
      packages = forAll (pkgs: rec {
        devhost = pkgs.callPackage ./nixos-module/package.nix { };
        default = devhost;
      });

      # The role module, with the package of this flake as its default.
      nixosModules.default = { pkgs, lib, ... }: {
        imports = [ ./nixos-module ];
        flyingcircus.roles.devhost.package =
          lib.mkDefault self.packages.${pkgs.stdenv.hostPlatform.system}.devhost;
      };

      checks = forAll (pkgs: {
        package = self.packages.${pkgs.stdenv.hostPlatform.system}.devhost;
        vm = import ./nixos-module/test-vm.nix {
          inherit pkgs;
          module = self.nixosModules.default;
        };
      });
    };
}
