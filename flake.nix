{
  description = "hark: USB microphones as stable RTSP streams (harkd, NixOS module, SD image)";

  # The current stable release. The first `nix build` writes flake.lock.
  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-26.05";

  outputs =
    { self, nixpkgs }:
    let
      inherit (nixpkgs) lib;
      systems = [
        "x86_64-linux"
        "aarch64-linux"
      ];
      # Lazy in pkgs: the attribute names of every per-system output can be
      # listed without evaluating nixpkgs (nix/tests/check.sh relies on it).
      forAllSystems = f: lib.genAttrs systems (system: f system nixpkgs.legacyPackages.${system});
      nixos = modules: nixpkgs.lib.nixosSystem { modules = [ self.nixosModules.default ] ++ modules; };
    in
    {
      overlays.default = final: _prev: {
        harkd = final.callPackage ./nix/package.nix { };
      };

      # The module as nixpkgs would carry it (package = pkgs.harkd) ...
      nixosModules.hark = import ./nix/module.nix;
      # ... and with this flake's package as the default.
      nixosModules.default =
        { lib, pkgs, ... }:
        {
          imports = [ self.nixosModules.hark ];
          services.hark.package = lib.mkDefault (pkgs.callPackage ./nix/package.nix { });
        };

      packages = forAllSystems (
        system: pkgs:
        {
          harkd = pkgs.callPackage ./nix/package.nix { };
          default = self.packages.${system}.harkd;
        }
        // lib.optionalAttrs (system == "aarch64-linux") {
          inherit (self.nixosConfigurations.hark-rpi.config.system.build) sdImage;
        }
        // lib.optionalAttrs (system == "x86_64-linux") {
          inherit (self.nixosConfigurations.hark-vm.config.system.build) vm;
        }
      );

      nixosConfigurations = {
        hark-rpi = nixos [
          ./nix/images/rpi.nix
          { nixpkgs.hostPlatform = "aarch64-linux"; }
        ];
        hark-vm = nixos [
          ./nix/images/vm.nix
          { nixpkgs.hostPlatform = "x86_64-linux"; }
        ];
      };

      checks = forAllSystems (
        system: pkgs: {
          inherit (self.packages.${system}) harkd;
          vm = pkgs.testers.runNixOSTest (import ./nix/tests/vm.nix { module = self.nixosModules.default; });
        }
      );

      devShells = forAllSystems (
        system: pkgs: {
          default = pkgs.mkShell {
            inputsFrom = [ self.packages.${system}.harkd ];
            packages = with pkgs; [
              clippy
              rustfmt
              ffmpeg-headless
              gst_all_1.gstreamer
              nixfmt
              deadnix
            ];
          };
        }
      );

      formatter = forAllSystems (_system: pkgs: pkgs.nixfmt-tree);
    };
}
