# Template of the shim flake nix/tests/check.sh writes under target/nix/ and
# runs `nix flake check --no-build` and `nix flake show` on (the @...@ markers
# are replaced). Its inputs are this repository's flake, with nixpkgs followed
# to a nixpkgs lib tree: the outputs that need only the lib (nixosModules,
# overlays) are re-exported and checked by `nix flake check` itself; the
# module, package and appliance evaluation (eval.nix) and the names of every
# output of the real flake are evaluated by the two checks below, whose
# derivations are never built (--no-build). Output values that need full
# nixpkgs (packages, nixosConfigurations, the VM test) are not evaluated.
{
  description = "offline checks of the hark flake (generated from nix/tests/flake-shim.nix)";

  inputs = {
    hark.url = "@HARK@";
    nixpkgs.url = "@LIB@";
    hark.inputs.nixpkgs.follows = "nixpkgs";
  };

  outputs =
    { hark, nixpkgs, ... }:
    let
      inherit (nixpkgs) lib;
      systems = [
        "x86_64-linux"
        "aarch64-linux"
      ];

      # The flake's outputs, by name.
      expected = {
        "packages.x86_64-linux" = [
          "default"
          "harkd"
          "vm"
        ];
        "packages.aarch64-linux" = [
          "default"
          "harkd"
          "sdImage"
        ];
        "checks.x86_64-linux" = [
          "harkd"
          "vm"
        ];
        "checks.aarch64-linux" = [
          "harkd"
          "vm"
        ];
        "devShells.x86_64-linux" = [ "default" ];
        "devShells.aarch64-linux" = [ "default" ];
        formatter = systems;
        nixosConfigurations = [
          "hark-rpi"
          "hark-vm"
        ];
        nixosModules = [
          "default"
          "hark"
        ];
        overlays = [ "default" ];
        "." = [
          "checks"
          "devShells"
          "formatter"
          "nixosConfigurations"
          "nixosModules"
          "overlays"
          "packages"
        ];
      };
      outputs = removeAttrs hark [
        "inputs"
        "outputs"
        "sourceInfo"
        "outPath"
        "_type"
        "lastModified"
        "lastModifiedDate"
        "narHash"
      ];
      namesOf =
        path:
        if path == "." then
          lib.attrNames outputs
        else
          lib.sort lib.lessThan (lib.attrNames (lib.attrByPath (lib.splitString "." path) { } outputs));
      structure = lib.all (
        path:
        namesOf path == lib.sort lib.lessThan expected.${path}
        || throw "flake structure: ${path} has ${builtins.toJSON (namesOf path)}, expected ${
          builtins.toJSON expected.${path}
        }"
      ) (lib.attrNames expected);

      moduleEval = import "${hark.outPath}/nix/tests/eval.nix" {
        libPath = "${nixpkgs.outPath}/lib";
        root = hark.outPath;
      };

      # Evaluated by `nix flake check --no-build`, never built.
      evalOnly =
        system: name: value:
        builtins.seq value (derivation {
          inherit system name;
          builder = "/bin/sh";
          args = [
            "-c"
            "echo ok > $out"
          ];
        });
    in
    {
      inherit (hark) nixosModules overlays;
      checks = lib.genAttrs systems (system: {
        structure = evalOnly system "hark-flake-structure" structure;
        module-eval = evalOnly system "hark-module-eval" (builtins.toJSON moduleEval);
      });
    };
}
