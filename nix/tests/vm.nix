# NixOS VM test (testers.runNixOSTest): harkd as the module sets it up, on a
# real systemd, D-Bus and udev, with snd-aloop as a hot-plugged sound card.
#   nix build .#checks.x86_64-linux.vm
{ module }:

{
  name = "hark";

  nodes.machine =
    { pkgs, ... }:
    {
      imports = [ module ];
      services.hark = {
        enable = true;
        # snd-aloop is not USB.
        settings.devices.allow_non_usb = true;
      };
      environment.systemPackages = [
        pkgs.alsa-utils
        pkgs.curl
        pkgs.ffmpeg-headless
        pkgs.jq
      ];
    };

  testScript = ''
    import json
    import re

    def mean_volume(url):
        """Pulls 3 s of a stream and returns ffmpeg's mean volume in dB."""
        out = machine.succeed(
            f"ffmpeg -nostdin -rtsp_transport tcp -i {url} -t 3 -af volumedetect -f null - 2>&1"
        )
        m = re.search(r"mean_volume: (-?[0-9.]+) dB", out)
        assert m is not None, out
        return float(m.group(1))

    def status():
        return json.loads(machine.succeed("curl -fsS http://127.0.0.1:8780/api/v1/status"))

    def streaming_devices():
        return [d["name"] for d in status()["devices"] if d["status"] == "streaming"]

    machine.wait_for_unit("harkd.service")  # Type=notify: active once READY=1

    with subtest("D-Bus: the agent owns org.hark.Agent1 under the shipped policy"):
        out = machine.succeed("busctl introspect org.hark.Agent1 /org/hark/Agent1")
        assert "org.hark.Agent1" in out and ".Reload" in out, out

    with subtest("HTTP: /healthz"):
        machine.wait_until_succeeds("curl -fsS http://127.0.0.1:8780/healthz")

    with subtest("RTSP: the shipped test tone is audible"):
        level = mean_volume("rtsp://127.0.0.1:8554/test-tone")
        assert level > -40, f"test-tone is silent: mean volume {level} dB"

    with subtest("hotplug: snd-aloop appears as a stream"):
        machine.succeed("modprobe snd-aloop")
        machine.wait_until_succeeds("curl -fsS http://127.0.0.1:8780/api/v1/status | jq -e '.devices[] | select(.status == \"streaming\")'")
        [name] = streaming_devices()
        # harkd captures device 0 of the loopback card; what is played into
        # device 1 comes out there.
        machine.succeed("speaker-test -D hw:Loopback,1,0 -c 1 -r 48000 -t sine -f 1000 >/dev/null 2>&1 &")
        machine.wait_until_succeeds(f"curl -fsS http://127.0.0.1:8780/api/v1/status | jq -e '.streams[] | select(.name == \"{name}\" and .state == \"running\")'")
        level = mean_volume(f"rtsp://127.0.0.1:8554/{name}")
        assert level > -40, f"{name} is silent: mean volume {level} dB"

    with subtest("unplug: the stream ends"):
        machine.succeed("pkill speaker-test || true")
        # Like a USB unplug: the card goes away while harkd holds it open.
        machine.succeed("echo snd_aloop.0 > /sys/bus/platform/drivers/snd_aloop/unbind")
        machine.wait_until_succeeds(
            "curl -fsS http://127.0.0.1:8780/api/v1/status > /tmp/status.json"
            f" && ! jq -e '.streams[] | select(.name == \"{name}\")' /tmp/status.json"
        )
        machine.wait_until_succeeds("modprobe -r snd-aloop")

    with subtest("restart: the card keeps its name"):
        machine.succeed("modprobe snd-aloop")
        machine.succeed("systemctl restart harkd.service")
        machine.wait_for_unit("harkd.service")
        machine.wait_until_succeeds(f"curl -fsS http://127.0.0.1:8780/api/v1/status | jq -e '.streams[] | select(.name == \"{name}\" and .state == \"running\")'")
        assert streaming_devices() == [name], streaming_devices()

    with subtest("the deadman unit is installed, not started"):
        machine.succeed("systemctl cat harkd-deadman.service")
        machine.fail("systemctl is-active harkd-deadman.service")
  '';
}
