# Declarations of the NixOS options that nix/module.nix and
# nix/images/appliance.nix set, and nothing else, typed as NixOS types them, so
# that the real lib.evalModules (from the vendored nixpkgs lib) rejects a
# misspelt option or a value of the wrong type. Submodules are closed (no
# freeformType) where the NixOS ones declare their keys; only the options set
# here are declared. Used by nix/tests/eval.nix, not by any system.
{ lib, ... }:

let
  inherit (lib) mkOption types;
  opt =
    type: default:
    mkOption {
      inherit type default;
    };
  # systemd's unit option values (nixos/lib/systemd-types.nix: unitOption).
  unitOption = types.oneOf [
    types.bool
    types.int
    types.str
    types.path
    (types.listOf (
      types.oneOf [
        types.bool
        types.int
        types.str
        types.path
      ]
    ))
  ];
in
{
  options = {
    assertions = opt (types.listOf types.unspecified) [ ];
    warnings = opt (types.listOf types.str) [ ];

    environment.etc = opt (types.attrsOf (
      types.submodule {
        options.source = mkOption { type = types.path; };
      }
    )) { };
    environment.systemPackages = opt (types.listOf types.package) [ ];

    systemd.packages = opt (types.listOf types.package) [ ];
    systemd.services = opt (types.attrsOf (
      types.submodule {
        options = {
          enable = opt types.bool true;
          overrideStrategy = opt (types.enum [
            "asDropinIfExists"
            "asDropin"
          ]) "asDropinIfExists";
          wantedBy = opt (types.listOf types.str) [ ];
          reloadTriggers = opt (types.listOf unitOption) [ ];
          restartTriggers = opt (types.listOf types.unspecified) [ ];
          unitConfig = opt (types.attrsOf unitOption) { };
          serviceConfig = opt (types.attrsOf unitOption) { };
        };
      }
    )) { };

    users.users = opt (types.attrsOf (
      types.submodule {
        options = {
          isSystemUser = opt types.bool false;
          group = opt types.str "";
          extraGroups = opt (types.listOf types.str) [ ];
          home = opt (types.passwdEntry types.path) "/var/empty";
          description = opt (types.passwdEntry types.str) "";
          openssh.authorizedKeys.keys = opt (types.listOf types.singleLineStr) [ ];
        };
      }
    )) { };
    users.groups = opt (types.attrsOf (
      types.submodule {
        options = {
          gid = opt (types.nullOr types.int) null;
          members = opt (types.listOf (types.passwdEntry types.str)) [ ];
        };
      }
    )) { };

    services.dbus.packages = opt (types.listOf types.path) [ ];
    services.udev.packages = opt (types.listOf types.path) [ ];

    boot.kernelModules = opt (types.listOf types.str) [ ];

    networking.hostName = opt (types.strMatching "^$|^[[:alnum:]]([[:alnum:]_-]{0,61}[[:alnum:]])?$") "nixos";
    networking.firewall.allowedTCPPorts = opt (types.listOf types.port) [ ];

    services.avahi = {
      enable = opt types.bool false;
      nssmdns4 = opt types.bool false;
      openFirewall = opt types.bool true;
      publish.enable = opt types.bool false;
      publish.addresses = opt types.bool false;
      extraServiceFiles = opt (types.attrsOf (types.either types.str types.path)) { };
    };

    services.journald.settings = opt (types.attrsOf (types.attrsOf unitOption)) { };

    services.openssh = {
      enable = opt types.bool false;
      settings = opt (types.submodule {
        options = {
          PasswordAuthentication = opt types.bool true;
          KbdInteractiveAuthentication = opt types.bool true;
          PermitRootLogin = opt (types.enum [
            "yes"
            "without-password"
            "prohibit-password"
            "forced-commands-only"
            "no"
          ]) "prohibit-password";
        };
      }) { };
    };

    system.stateVersion = opt types.str "26.05";
  };
}
