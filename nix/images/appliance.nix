# The hark appliance: what both images (the Raspberry Pi SD image and the
# x86_64 VM) have in common. harkd runs with the shipped configuration (the
# module's defaults are configs/hark.toml), the streams are findable as
# rtsp://hark.local:8554/<name>, and SSH is off unless a key is given.
{ config, lib, ... }:

let
  cfg = config.hark.image;
in
{
  options.hark.image.authorizedKeys = lib.mkOption {
    type = lib.types.listOf lib.types.str;
    default = [ ];
    example = [ "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI... you@laptop" ];
    description = ''
      SSH public keys allowed to log in as root. SSH is off while this is
      empty; with a key it runs with key-only authentication.
    '';
  };

  config = {
    services.hark = {
      enable = true;
      openFirewall = true;
    };

    networking.hostName = lib.mkDefault "hark";

    # mDNS: hark.local resolves from other machines, and the RTSP server is
    # announced as a service (avahi-browse -r _rtsp._tcp).
    services.avahi = {
      enable = true;
      nssmdns4 = true;
      openFirewall = true;
      publish = {
        enable = true;
        addresses = true;
      };
      extraServiceFiles.hark-rtsp = ''
        <?xml version="1.0" standalone='no'?>
        <!DOCTYPE service-group SYSTEM "avahi-service.dtd">
        <service-group>
          <name replace-wildcards="yes">hark on %h</name>
          <service>
            <type>_rtsp._tcp</type>
            <port>${toString config.services.hark.settings.rtsp.port}</port>
          </service>
        </service-group>
      '';
    };

    # SD cards wear out: cap the journal. It stays persistent, so the reason for
    # a deadman reboot can still be read after it.
    services.journald.settings.Journal = {
      SystemMaxUse = "64M";
      SystemMaxFileSize = "8M";
      RuntimeMaxUse = "16M";
      MaxRetentionSec = "1month";
    };

    services.openssh = {
      enable = cfg.authorizedKeys != [ ];
      settings = {
        PasswordAuthentication = false;
        KbdInteractiveAuthentication = false;
        PermitRootLogin = "prohibit-password";
      };
    };
    users.users.root.openssh.authorizedKeys.keys = cfg.authorizedKeys;

    system.stateVersion = "26.05";
  };
}
