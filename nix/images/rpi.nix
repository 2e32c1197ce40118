# SD card image for 64-bit Raspberry Pi class boards (nixpkgs' generic aarch64
# SD image: U-Boot and the Raspberry Pi firmware for the Pi 3 and 4, extlinux,
# the mainline kernel). The Pi 5 needs a kernel with its RP1 support, which this
# image does not select.
#   nix build .#packages.aarch64-linux.sdImage
{ modulesPath, ... }:

{
  imports = [
    "${modulesPath}/installer/sd-card/sd-image-aarch64.nix"
    ./appliance.nix
  ];

  # A zstd-compressed image: result/sd-image/*.img.zst.
  sdImage.compressImage = true;

  # The hardware watchdog (bcm2835-wdt, at most about 15 s): systemd feeds it,
  # and a hung kernel or PID 1 reboots the board. harkd's own watchdog is the
  # unit's WatchdogSec=.
  boot.kernelModules = [ "bcm2835_wdt" ];
  systemd.settings.Manager = {
    RuntimeWatchdogSec = "15s";
    RebootWatchdogSec = "10min";
  };
}
