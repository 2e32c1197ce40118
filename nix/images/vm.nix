# The appliance as an x86_64 QEMU virtual machine, for trying hark without a
# board: the shipped test tone streams at once, and a USB microphone can be
# passed through (see the README).
#   nix run .#packages.x86_64-linux.vm
{ modulesPath, ... }:

{
  imports = [
    "${modulesPath}/virtualisation/qemu-vm.nix"
    ./appliance.nix
  ];

  virtualisation = {
    memorySize = 1024;
    graphics = false;
    # The RTSP port on the host's loopback: rtsp://127.0.0.1:8554/test-tone
    # (with -rtsp_transport tcp: QEMU's user networking forwards TCP only).
    forwardPorts = [
      {
        from = "host";
        host.port = 8554;
        guest.port = 8554;
      }
    ];
    # An xHCI controller to attach a host microphone to, e.g.
    # QEMU_OPTS="-device usb-host,vendorid=0x0d8c,productid=0x0014"
    qemu.options = [
      "-device"
      "qemu-xhci"
    ];
  };

  # A console login for the VM only; the SD image has none.
  services.getty.autologinUser = "root";
}
