# Evaluates this flake's NixOS module (nixosModules.default, as the flake
# exports it), the appliance profile of the images, package.nix and the
# overlay with the REAL lib.evalModules of a nixpkgs lib tree, against the
# option declarations in stubs/nixos.nix and the stand-ins in stubs/pkgs.nix.
# Prints what nix/tests/check_eval.py compares with the shipped files.
#   nix-instantiate --eval --strict --json nix/tests/eval.nix --arg libPath ./nixpkgs-lib/lib
{
  libPath,
  root ? ../..,
}:

let
  lib = import libPath;
  pkgs = import ./stubs/pkgs.nix { inherit lib; };

  # The flake's outputs, with nixpkgs reduced to its lib: only outputs that
  # need no packages (the modules, the overlay) are used here.
  flake = (import (root + "/flake.nix")).outputs {
    self = flake;
    nixpkgs = {
      inherit lib;
      legacyPackages = throw "eval.nix: nixpkgs packages are not available offline";
    };
  };

  evalWith =
    modules:
    let
      config =
        (lib.evalModules {
          specialArgs = { inherit pkgs; };
          modules = [
            ./stubs/nixos.nix
            flake.nixosModules.default
          ]
          ++ modules;
        }).config;
      failed = lib.filter (a: !a.assertion) config.assertions;
    in
    if failed != [ ] then throw (lib.concatMapStringsSep "\n" (a: a.message) failed) else config;

  report =
    c:
    let
      etc = c.environment.etc."hark/hark.toml".source;
    in
    {
      services = lib.filterAttrs (n: _: lib.hasPrefix "harkd" n) c.systemd.services;
      systemdPackages = c.systemd.packages;
      systemPackages = c.environment.systemPackages;
      configFile = {
        settingsJson = etc.env.settingsFile;
        inherit (etc) buildCommand;
        nativeBuildInputs = etc.env.nativeBuildInputs;
      };
      etcFiles = lib.attrNames c.environment.etc;
      users = c.users.users;
      groups = c.users.groups;
      dbusPackages = c.services.dbus.packages;
      udevPackages = c.services.udev.packages;
      inherit (c.boot) kernelModules;
      tcpPorts = c.networking.firewall.allowedTCPPorts;
      inherit (c.networking) hostName;
      inherit (c.services) avahi journald openssh;
      inherit (c) warnings;
    };

  hark = settings: {
    services.hark = {
      enable = true;
    }
    // settings;
  };

  failsWith =
    modules:
    let
      r = builtins.tryEval (builtins.deepSeq (report (evalWith modules)) true);
    in
    !r.success;

  package = pkgs.callPackage (root + "/nix/package.nix") { };
in
{
  scenarios = {
    default = report (evalWith [ (hark { }) ]);
    openFirewall = report (evalWith [ (hark { openFirewall = true; }) ]);
    httpExposed = report (evalWith [
      (hark {
        openFirewall = true;
        settings.http = {
          listen = "0.0.0.0:9000";
          allow_non_loopback = true;
          auth = {
            user = "op";
            password = "page-pass";
          };
        };
        settings.rtsp.port = 554;
      })
    ]);
    deadmanOff = report (evalWith [ (hark { deadman.enable = false; }) ]);
    # A webhook (set up only at start: a restart) and a gain (a reload).
    withAlert = report (evalWith [
      (hark {
        settings.alert = [
          {
            url = "https://ntfy.sh/hark-test";
            secret_file = "/run/secrets/hark-webhook";
          }
        ];
      })
    ]);
    withGain = report (evalWith [ (hark { settings.defaults.gain_db = 3.0; }) ]);
    withDevices = report (evalWith [
      (hark {
        settings = {
          stream = [ ];
          device = [
            {
              name = "garden";
              serial = "A1B2C3D4";
              highpass_hz = 80.0;
            }
            {
              name = "attic";
              vendor_product = "0d8c:0014";
              port = "1-1.3";
            }
          ];
          rtsp.auth = {
            user = "hark";
            password = "change-me";
          };
        };
      })
    ]);
    appliance = report (evalWith [ (root + "/nix/images/appliance.nix") ]);
    applianceWithKey = report (evalWith [
      (root + "/nix/images/appliance.nix")
      { hark.image.authorizedKeys = [ "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAITESTKEY test@example" ]; }
    ]);
  };

  # The module's own assertions must fire.
  assertionsFire = {
    deadmanWithoutUnit = failsWith [
      (hark {
        deadman.enable = false;
        settings.deadman.enabled = true;
      })
    ];
    stateDirOutside = failsWith [ (hark { settings.devices.state_dir = "/srv/hark"; }) ];
    httpWithoutCredentials = failsWith [
      (hark {
        settings.http = {
          listen = "0.0.0.0:8780";
          allow_non_loopback = true;
        };
      })
    ];
  };

  package = {
    inherit (package) pname version meta;
    inherit (package.args)
      cargoBuildFlags
      cargoTestFlags
      checkFlags
      postInstall
      postFixup
      preCheck
      ;
    lockFile = "${package.args.cargoLock.lockFile}";
    src = "${package.src}";
    gstPlugins = package.gstPlugins.buildCommand;
    gstElements = package.gstPlugins.env.passthru.elements;
  };

  overlay = (flake.overlays.default pkgs pkgs).harkd.pname;
}
