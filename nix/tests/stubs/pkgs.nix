# Stand-ins for the few parts of nixpkgs that the module, the appliance profile
# and package.nix use, so they evaluate with the vendored lib alone: nothing
# here builds. formats.toml has nixpkgs' type; its generate writes the JSON that
# nixpkgs would hand to its TOML renderer (check.sh renders and checks it).
# runCommand and buildRustPackage return their arguments, so the checks can
# look at them. Used by nix/tests/eval.nix only.
{ lib }:

let
  fake =
    name: extra:
    {
      type = "derivation";
      inherit name;
      outPath = "/nix/store/00000000000000000000000000000000-${name}";
      out = fake name { };
    }
    // extra;

  pkgs = {
    inherit lib;

    formats.toml =
      { }:
      {
        type =
          let
            valueType =
              lib.types.oneOf [
                lib.types.bool
                lib.types.int
                lib.types.float
                lib.types.str
                lib.types.path
                (lib.types.attrsOf valueType)
                (lib.types.listOf valueType)
              ]
              // {
                description = "TOML value";
              };
          in
          valueType;
        generate = name: value: builtins.toFile "${name}.json" (builtins.toJSON value);
      };

    runCommand =
      name: env: buildCommand:
      fake name { inherit env buildCommand; };

    stdenv = {
      buildPlatform.canExecute = _: true;
      hostPlatform.system = "x86_64-linux";
    };

    callPackage = lib.callPackageWith pkgs;

    harkd = fake "harkd-0.1.0" {
      pname = "harkd";
      meta.mainProgram = "harkd";
    };

    # package.nix's inputs.
    rustPlatform.buildRustPackage =
      args:
      fake "${args.pname}-${args.version}" args
      // args.passthru or { }
      // {
        inherit args;
      };
    pkg-config = fake "pkg-config" { };
    makeBinaryWrapper = fake "make-binary-wrapper-hook" { };
    coreutils = fake "coreutils" { };
    procps = fake "procps" { };
    alsa-lib = fake "alsa-lib" { };
    udev = fake "systemd-minimal-libs" { };
    gst_all_1 = lib.genAttrs [
      "gstreamer"
      "gst-plugins-base"
      "gst-plugins-good"
      "gst-libav"
      "gst-plugins-bad"
      "gst-rtsp-server"
    ] (n: fake n { bin = fake "${n}-bin" { }; });
    libnice = fake "libnice-bin" { out = fake "libnice" { }; };
  };
in
pkgs
