"""The guest: a QEMU machine (the fast tier's initramfs, or the system tier's
disk with systemd), its serial console, its command channel on a virtio port,
its QEMU monitor, its forwarded ports and its work directory; and the
accelerator probe."""

import base64
import json
import os
import socket
import subprocess
import tempfile
import time
import urllib.request

from .common import HTTP_PASSWORD, HTTP_USER, HilError, free_port, wait_until


def kvm_works(artifacts):
    """KVM is used only when it really runs our kernel: here /dev/kvm exists but
    is a nested module on which a stock kernel aborts or crawls. The probe boots
    the kernel with no root file system and waits for its panic (about 1 s on a
    working KVM)."""
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return False
    try:
        r = subprocess.run(
            ["qemu-system-x86_64", "-accel", "kvm", "-cpu", "host", "-display", "none",
             "-nodefaults", "-no-reboot", "-m", "256", "-serial", "stdio",
             "-kernel", os.path.join(artifacts, "vmlinux"),
             "-append", "console=ttyS0 panic=-1 root=/dev/nonexistent"],
            stdin=subprocess.DEVNULL, capture_output=True, timeout=15)
        return b"Kernel panic" in r.stdout
    except (OSError, subprocess.TimeoutExpired):
        return False


ACCEL = None


def is_aarch64(artifacts):
    """Whether build-guest.sh built these artifacts for aarch64 (an OUT/Image)."""
    return os.path.exists(os.path.join(artifacts, "Image"))


def machine(artifacts):
    """The QEMU command, CPU, kernel and console device for a guest built by
    build-guest.sh: an aarch64 one (OUT/Image) runs on QEMU's `virt` board with
    a Cortex-A72, the core of the Raspberry Pi 4, always under TCG on this
    x86_64 host; an x86_64 one (OUT/vmlinux) on the PC, with KVM when it works."""
    if is_aarch64(artifacts):
        return (["qemu-system-aarch64", "-M", "virt", "-cpu", "cortex-a72", "-accel", "tcg"],
                os.path.join(artifacts, "Image"), "ttyAMA0")
    return (["qemu-system-x86_64", *accel(artifacts)], os.path.join(artifacts, "vmlinux"), "ttyS0")


def accel(artifacts):
    global ACCEL
    if ACCEL is None:
        ACCEL = ["-accel", "kvm", "-cpu", "host"] if kvm_works(artifacts) else ["-accel", "tcg"]
        print(f"hil: accelerator {ACCEL[1]}", flush=True)
    return ACCEL


# Guests started by the scenario that runs now (closed, and shown on failure).
LIVE = []


class Guest:
    """One QEMU guest of the fast tier, with a command channel and forwarded
    RTSP and HTTP ports."""

    def __init__(self, artifacts, name, boot_timeout=90, disk=None, workdir=None, extra=()):
        """`disk`: the system tier's root file system image (the guest then
        boots systemd from it; the same image can be booted again)."""
        self.name = name
        self.proc = self.ctl = self.qemu_log = None
        self.dir = workdir or tempfile.mkdtemp(prefix=f"hil-{name}-")
        # Listed at once: a scenario bound that expires from here on still
        # finds the guest to show, stop and clean up.
        LIVE.append(self)
        self.console = os.path.join(self.dir, f"console-{time.monotonic_ns()}.log")
        self.rtsp_port = free_port()
        self.http_port = free_port()
        # Four "hub sockets": host port usbip_ports[k] -> vhci-hcd port k.
        self.usbip_ports = [free_port() for _ in range(4)]
        ctl = os.path.join(self.dir, "ctl.sock")
        self.monitor_path = os.path.join(self.dir, "mon.sock")
        qemu, kernel, console = machine(artifacts)
        args = [*qemu, "-m", "1024", "-smp", "2", "-nodefaults",
                "-display", "none", "-no-reboot",
                "-kernel", kernel,
                "-initrd", os.path.join(artifacts, "initrd.cpio"),
                "-append", (f"console={console} panic=-1 loglevel=4 root=/dev/vda rw "
                            "systemd.show_status=0" if disk else
                            f"console={console} panic=-1 loglevel=4 rdinit=/init"),
                "-chardev", f"file,id=con,path={self.console}", "-serial", "chardev:con",
                "-netdev", f"user,id=n0,hostfwd=tcp:127.0.0.1:{self.rtsp_port}-:8554,"
                           f"hostfwd=tcp:127.0.0.1:{self.http_port}-:8780,"
                           + ",".join(f"hostfwd=tcp:127.0.0.1:{p}-:{3240 + k}"
                                      for k, p in enumerate(self.usbip_ports)),
                "-device", "virtio-net-pci,netdev=n0",
                "-device", "virtio-rng-pci",
                "-device", "virtio-serial-pci",
                "-chardev", f"socket,id=ctl,path={ctl},server=on,wait=off",
                "-device", "virtserialport,chardev=ctl,name=hil",
                "-monitor", f"unix:{self.monitor_path},server=on,wait=off",
                "-device", "qemu-xhci,id=xhci", "-audiodev", "none,id=snd0"]
        if disk:
            args += ["-drive", f"file={disk},if=virtio,format=raw"]
        args += list(extra)
        self.started = time.monotonic()
        self.qemu_log = open(os.path.join(self.dir, "qemu.log"), "ab")
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL,
                                     stdout=self.qemu_log, stderr=subprocess.STDOUT)
        # Connect before the guest reads the port (a read with nobody connected
        # sees end-of-file).
        self.ctl = socket.socket(socket.AF_UNIX)
        wait_until("the control socket", 10, lambda: self.ctl.connect(ctl) or True)
        self.buf = b""
        self.wait_console("HIL: ready", boot_timeout)
        self.boot_s = time.monotonic() - self.started

    def wait_exit(self, timeout):
        """Waits for QEMU to exit (a guest reboot, with -no-reboot); True if it did."""
        try:
            self.proc.wait(timeout=timeout)
            return True
        except subprocess.TimeoutExpired:
            return False

    def console_text(self):
        try:
            with open(self.console, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def wait_console(self, text, timeout):
        deadline = time.monotonic() + timeout
        while text not in self.console_text():
            if self.proc.poll() is not None:
                raise HilError(f"QEMU exited ({self.proc.returncode}) before {text!r}")
            if time.monotonic() > deadline:
                raise HilError(f"no {text!r} on the console within {timeout} s")
            time.sleep(0.05)

    def sh(self, cmd, timeout=30, check=True):
        """Runs one shell command line in the guest; returns (rc, output)."""
        if "\n" in cmd:
            raise ValueError("one line per command")
        self.ctl.sendall(cmd.encode() + b"\n")
        deadline = time.monotonic() + timeout
        self.ctl.settimeout(0.2)
        while b"@@HIL rc=" not in self.buf or not self.buf.split(b"@@HIL rc=", 1)[1].count(b"\n"):
            if time.monotonic() > deadline:
                raise HilError(f"guest command timed out after {timeout} s: {cmd}")
            if self.proc.poll() is not None:
                raise HilError(f"QEMU exited during: {cmd}")
            try:
                chunk = self.ctl.recv(65536)
                if not chunk:
                    raise HilError("control channel closed")
                self.buf += chunk
            except socket.timeout:
                pass
        out, rest = self.buf.split(b"@@HIL rc=", 1)
        rc_line, self.buf = rest.split(b"\n", 1)
        rc = int(rc_line)
        text = out.decode("utf-8", "replace")
        if check and rc != 0:
            raise HilError(f"guest command failed ({rc}): {cmd}\n{text}")
        return rc, text

    def write(self, path, text):
        b64 = base64.b64encode(text.encode()).decode()
        self.sh(f"mkdir -p $(dirname {path}) && echo {b64} | base64 -d > {path}")

    def monitor(self, command):
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(self.monitor_path)
            s.settimeout(5)
            s.sendall(command.encode() + b"\n")
            time.sleep(0.3)
            try:
                return s.recv(65536).decode("utf-8", "replace")
            except socket.timeout:
                return ""

    def http_json(self, path, timeout=5):
        url = f"http://127.0.0.1:{self.http_port}{path}"
        creds = base64.b64encode(f"{HTTP_USER}:{HTTP_PASSWORD}".encode()).decode()
        req = urllib.request.Request(url, headers={"Authorization": f"Basic {creds}"})
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return json.loads(r.read())

    def close(self):
        if self.ctl is not None:
            self.ctl.close()
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait(timeout=10)
        if self.qemu_log is not None:
            self.qemu_log.close()


def boot_system(system_dir, name, disk=None):
    """Boots the system image (a fresh copy unless `disk` is given: reusing a
    disk is booting the same board again)."""
    if disk is None:
        work = tempfile.mkdtemp(prefix=f"hil-{name}-")
        disk = os.path.join(work, "disk.raw")
        subprocess.run(["cp", "--sparse=always", os.path.join(system_dir, "disk.raw"), disk],
                       check=True)
    g = Guest(system_dir, name, boot_timeout=240, disk=disk, workdir=os.path.dirname(disk))
    g.disk = disk
    print(f"hil: {name}: systemd guest ready in {g.boot_s:.1f} s", flush=True)
    return g
