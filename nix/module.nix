# services.hark: harkd, the hark microphone agent, as a NixOS service.
#
# The service is the unit harkd ships (configs/systemd/harkd.service, installed
# by the package with its ExecStart pointing into the store), taken through
# systemd.packages; this module only adds a drop-in (wantedBy, triggers), never
# a hardening or restart setting of its own. nix/tests/check.sh fails when the
# two drift apart. The settings are rendered to /etc/hark/hark.toml, the path
# the shipped units read, and checked with `harkd check-config` at build time.
{
  config,
  lib,
  pkgs,
  ...
}:

let
  inherit (lib) mkOption types;

  cfg = config.services.hark;
  settingsFormat = pkgs.formats.toml { };

  # A TOML table with some keys typed; the others pass through as TOML values
  # and are checked by harkd itself.
  table =
    options:
    types.submodule {
      freeformType = settingsFormat.type;
      inherit options;
    };

  # TOML has no null: unset optional keys are left out of the file.
  withoutNulls =
    v:
    if lib.isAttrs v then
      lib.mapAttrs (_: withoutNulls) (lib.filterAttrs (_: x: x != null) v)
    else if lib.isList v then
      map withoutNulls v
    else
      v;

  settingsFile = settingsFormat.generate "hark.toml" (withoutNulls cfg.settings);

  # A typo in settings fails the system build, not the board. When the build
  # platform cannot run the host's harkd (cross builds), the file is only copied.
  configFile =
    pkgs.runCommand "hark.toml"
      {
        nativeBuildInputs = [ cfg.package ];
        inherit settingsFile;
        preferLocalBuild = true;
      }
      (
        lib.optionalString (pkgs.stdenv.buildPlatform.canExecute pkgs.stdenv.hostPlatform) ''
          harkd check-config "$settingsFile"
        ''
        + ''
          cp "$settingsFile" "$out"
        ''
      );

  # "host:port" of http.listen, with IPv6 hosts in brackets.
  httpHost = lib.removeSuffix "]" (
    lib.removePrefix "[" (
      lib.concatStringsSep ":" (lib.init (lib.splitString ":" cfg.settings.http.listen))
    )
  );
  httpPort = lib.toInt (lib.last (lib.splitString ":" cfg.settings.http.listen));
  httpIsLoopback = lib.hasPrefix "127." httpHost || httpHost == "::1";

  optional =
    type: description:
    mkOption {
      type = types.nullOr type;
      default = null;
      inherit description;
    };
in
{
  options.services.hark = {
    enable = lib.mkEnableOption "harkd, the hark microphone agent (USB microphones as RTSP streams)";

    package = lib.mkPackageOption pkgs "harkd" { };

    openFirewall = mkOption {
      type = types.bool;
      default = false;
      description = ''
        Open the RTSP port (`settings.rtsp.port`, TCP) in the firewall, and the
        status endpoint's port when `settings.http.listen` is not a loopback
        address. With RTP interleaved in the RTSP connection (TCP) nothing else
        is needed. RTP over UDP goes out from ports the kernel picks; the
        stateful firewall is expected to let the clients' RTCP replies in as
        related traffic (not covered by the VM test, which pulls over TCP).
      '';
    };

    deadman.enable = mkOption {
      type = types.bool;
      default = true;
      example = false;
      description = ''
        Whether the reboot deadman is armed: `harkd-deadman.service` runs when
        harkd fails for good (start limit hit, or exit 4 after no capture stream
        ran for `deadman.unhealthy_after_s`) and reboots the machine if the reboot
        ledger allows (at most `deadman.max_reboots` in `deadman.window_s`).
        When false, the deadman unit is masked and `settings.deadman.enabled`
        defaults to false.
      '';
    };

    settings = mkOption {
      description = ''
        Configuration of harkd, written to {file}`/etc/hark/hark.toml`. Every key
        of harkd's configuration may be set (see `configs/hark.toml` in the
        source, or {file}`share/hark/hark.toml` in the package, which documents
        each one); the common ones are typed below. The defaults are those of
        the shipped `configs/hark.toml`. The file is checked with
        `harkd check-config` when the system is built. Changes are applied by
        reloading harkd (SIGHUP), except those harkd sets up only at start
        (`rtsp`, `http`, `deadman`, `recording`, `alert`, `health.level_interval_ms`,
        `devices.enabled`, `devices.state_dir`), which restart it. Everything
        here lands in the world-readable Nix store: give a webhook's secret as
        `secret_file` (a path), not `secret`.
      '';
      default = { };
      example = lib.literalExpression ''
        {
          rtsp.auth = { user = "hark"; password = "change-me"; };
          defaults.codec = "l16";
          device = [
            { name = "garden"; serial = "A1B2C3D4"; highpass_hz = 80.0; }
          ];
          stream = [ ];
        }
      '';
      type = table {
        rtsp = mkOption {
          description = "The RTSP server.";
          default = { };
          type = table {
            bind = mkOption {
              type = types.str;
              default = "0.0.0.0";
              example = "::";
              description = "Address the RTSP server listens on (`0.0.0.0`: every IPv4 interface).";
            };
            port = mkOption {
              type = types.port;
              default = 8554;
              description = "TCP port of the RTSP server; streams are at `rtsp://<host>:<port>/<name>`.";
            };
          };
        };

        http = mkOption {
          description = ''
            The HTTP endpoint: the status page at `/` with listening in the browser (WHEP),
            `/healthz`, `/api/v1/status`, `/metrics`. Beyond loopback every path but `/healthz`
            asks for `auth` (or `rtsp.auth`); like every setting, the password lands in the
            world-readable Nix store.
          '';
          default = { };
          type = table {
            listen = mkOption {
              type = types.str;
              default = "127.0.0.1:8780";
              example = "0.0.0.0:8780";
              description = "Address and port of the status endpoint; a non-loopback address needs `allow_non_loopback`.";
            };
            allow_non_loopback = mkOption {
              type = types.bool;
              default = false;
              description = "Allow `listen` to be a non-loopback address (then `auth` or `rtsp.auth` is required).";
            };
            max_listeners = mkOption {
              type = types.ints.between 0 64;
              default = 8;
              description = "Browsers listening at once over WHEP, all streams together; 0 turns listening off.";
            };
          };
        };

        devices = mkOption {
          description = "Discovery of USB microphones (udev hotplug, persistent names).";
          default = { };
          type = table {
            enabled = mkOption {
              type = types.bool;
              default = true;
              description = "Stream every USB microphone found at start-up or plugged in later.";
            };
            state_dir = mkOption {
              type = types.str;
              default = "/var/lib/hark";
              description = ''
                Where the name ledger and the reboot ledger are kept. The unit
                lets the agent write only below {file}`/var/lib/hark`.
              '';
            };
            allow_non_usb = mkOption {
              type = types.bool;
              default = false;
              description = "Also stream sound cards that are not USB (onboard audio, HDMI, snd-aloop).";
            };
          };
        };

        deadman = mkOption {
          description = "The reboot deadman's policy (see `services.hark.deadman.enable`).";
          default = { };
          type = table {
            enabled = mkOption {
              type = types.bool;
              default = cfg.deadman.enable;
              defaultText = lib.literalExpression "config.services.hark.deadman.enable";
              description = "Whether the agent exits 4 for the deadman when no capture stream can run.";
            };
            max_reboots = mkOption {
              type = types.ints.between 1 100;
              default = 3;
              description = "At most this many reboots in `window_s`.";
            };
            window_s = mkOption {
              type = types.ints.positive;
              default = 86400;
              description = "The window the reboots are counted in, in seconds (uptime, not wall clock).";
            };
            min_spacing_s = mkOption {
              type = types.ints.unsigned;
              default = 1800;
              description = "At least this many seconds between two reboots.";
            };
            unhealthy_after_s = mkOption {
              type = types.ints.positive;
              default = 900;
              description = "Seconds with capture streams but none running before the agent asks for a reboot.";
            };
            good_after_s = mkOption {
              type = types.ints.positive;
              default = 600;
              description = "Seconds with a stream running after which the agent marks its boot good.";
            };
            reboot = mkOption {
              type = types.enum [
                "logind"
                "systemctl"
              ];
              default = "logind";
              description = "How the deadman reboots.";
            };
          };
        };

        stream = mkOption {
          description = ''
            Configured streams, served whether or not a microphone is plugged in.
            Besides `name` and `source`, a stream takes `device` and
            `alsa_buffer_ms` (alsa), `tone_hz` and `tone_dbfs` (tone), and the
            encoding keys `codec`, `bitrate`, `sample_rate`, `channels`,
            `gain_db`, `highpass_hz`, `frame_ms`. The default is the shipped test tone; set
            `[ ]` to serve only discovered microphones.
          '';
          default = [
            {
              name = "test-tone";
              source = "tone";
              tone_hz = 440.0;
              tone_dbfs = -20.0;
            }
          ];
          example = lib.literalExpression ''
            [
              { name = "garden"; source = "alsa"; device = "hw:CARD=Device,DEV=0"; highpass_hz = 80.0; }
            ]
          '';
          type = types.listOf (table {
            name = mkOption {
              type = types.strMatching "[a-z0-9][a-z0-9_-]{0,31}";
              description = "Stream name, the path of its URL.";
            };
            source = mkOption {
              type = types.enum [
                "alsa"
                "tone"
              ];
              description = "`alsa` (a capture device) or `tone` (a built-in sine).";
            };
          });
        };

        device = mkOption {
          description = ''
            Rules that name discovered microphones (and may set their encoding
            keys). Each needs at least one of `serial`, `vendor_product`, `port`;
            all given must match.
          '';
          default = [ ];
          example = lib.literalExpression ''
            [ { name = "attic"; vendor_product = "0d8c:0014"; port = "1-1.3"; } ]
          '';
          type = types.listOf (table {
            name = mkOption {
              type = types.strMatching "[a-z0-9][a-z0-9_-]{0,31}";
              description = "The name (and stream path) a matching device gets.";
            };
            serial = optional types.str "The device's USB serial number.";
            vendor_product = optional (types.strMatching "[0-9a-fA-F]{4}:[0-9a-fA-F]{4}") "USB ids as `vvvv:pppp` (hex).";
            port = optional types.str "The USB port, as the kernel names it (`1-1.4`).";
          });
        };
      };
    };
  };

  config = lib.mkIf cfg.enable {
    assertions = [
      {
        assertion = cfg.settings.deadman.enabled -> cfg.deadman.enable;
        message = ''
          services.hark.settings.deadman.enabled is true but services.hark.deadman.enable
          is false: the agent would exit 4 with nothing to act on it.
        '';
      }
      {
        assertion =
          httpIsLoopback || cfg.settings.http ? auth || (cfg.settings ? rtsp && cfg.settings.rtsp ? auth);
        message = ''
          services.hark.settings.http.listen is beyond loopback: the status page, its events and
          WHEP listening then need credentials. Set services.hark.settings.http.auth = { user = ...;
          password = ...; } (or settings.rtsp.auth, used when http.auth is absent).
        '';
      }
      {
        assertion =
          cfg.settings.devices.state_dir == "/var/lib/hark"
          || lib.hasPrefix "/var/lib/hark/" cfg.settings.devices.state_dir;
        message = "services.hark.settings.devices.state_dir must be /var/lib/hark or below: the unit lets harkd write nowhere else.";
      }
    ];

    environment.etc."hark/hark.toml".source = configFile;
    environment.systemPackages = [ cfg.package ];

    systemd.packages = [ cfg.package ];
    systemd.services.harkd = {
      overrideStrategy = "asDropin";
      wantedBy = [ "multi-user.target" ];
      # SIGHUP applies a changed file without touching unchanged streams; what
      # harkd only sets up at start (the RTSP and HTTP listeners, the deadman,
      # [recording], the [[alert]] senders, the level interval, where devices
      # are watched and remembered: harkd's own list of keys that need a
      # restart) restarts it. A new package changes ExecStart and restarts it anyway.
      reloadTriggers = [ configFile ];
      restartTriggers = [
        (builtins.toJSON {
          tables = lib.filterAttrs (
            n: _:
            builtins.elem n [
              "rtsp"
              "http"
              "deadman"
              "recording"
              "alert"
            ]
          ) cfg.settings;
          level_interval_ms = cfg.settings.health.level_interval_ms or null;
          devices_enabled = cfg.settings.devices.enabled or null;
          state_dir = cfg.settings.devices.state_dir or null;
        })
      ];
    };
    # Masked, not removed: it comes with the package's units.
    systemd.services.harkd-deadman = lib.mkIf (!cfg.deadman.enable) { enable = false; };

    users.users.hark = {
      isSystemUser = true;
      group = "hark";
      extraGroups = [ "audio" ];
      home = "/var/lib/hark";
      description = "hark microphone agent";
    };
    users.groups.hark = { };

    services.dbus.packages = [ cfg.package ];
    services.udev.packages = [ cfg.package ];

    # The unit's DeviceAllow=char-alsa is resolved when it starts: snd must be
    # loaded by then, or a microphone plugged in after a card-less boot cannot
    # be opened.
    boot.kernelModules = [ "snd" ];

    networking.firewall.allowedTCPPorts = lib.mkIf cfg.openFirewall (
      [ cfg.settings.rtsp.port ] ++ lib.optional (!httpIsLoopback) httpPort
    );
  };

}
