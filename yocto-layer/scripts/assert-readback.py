#!/usr/bin/env python3
"""Assert what bitbake computed for meta-hark's recipes (JSON from bb-readback.py).

  assert-readback.py READBACK.json [--buildlist pn-buildlist] [--machine M]

- harkd installs exactly the files configs/ ships for a system (every tracked
  file under configs/ but dev.toml), each once, at its place, and each
  installed file is in a package (FILES:harkd, or SYSTEMD_SERVICE for the
  enabled unit); SYSTEMD_SERVICE is harkd.service alone (the deadman unit has
  no [Install] section and is not enabled); CONFFILES is /etc/hark/hark.toml;
  the hark user is made as configs/sysusers.d/hark.conf describes it;
- RDEPENDS:harkd as bitbake computed it is what the recipe says (the element
  check reads the recipe) plus the base utilities;
- LIC_FILES_CHKSUM matches Cargo.toml; SRCREV is a commit of this repository,
  an ancestor of HEAD, with the same configs/ file list and the license line;
- hark-image: systemd as init, packagegroup-hark installed, no SSH server, no
  extra users, no debug image features; the hark distro builds GStreamer's
  opus and alsa plugins; hark-system-conf installs the watchdog and journal
  drop-ins;
- pn-buildlist (bitbake -g hark-image) has harkd, libopus, the packagegroup
  and the system settings, no SSH server, and for Raspberry Pi its kernel.
"""

import argparse
import fnmatch
import hashlib
import json
import os
import re
import shlex
import subprocess
import sys

BAD_IMAGE_FEATURES = {"debug-tweaks", "allow-empty-password", "empty-root-password",
                      "allow-root-login", "post-install-logging", "ssh-server-dropbear",
                      "ssh-server-openssh", "tools-debug", "dbg-pkgs", "dev-pkgs"}
# configs/ file -> where a system install puts it (the project README's install
# steps, with the vendor directories a package uses).
EXPECTED_DEST = {
    "configs/hark.toml": "/etc/hark/hark.toml",
    "configs/systemd/harkd.service": "/usr/lib/systemd/system/harkd.service",
    "configs/systemd/harkd-deadman.service": "/usr/lib/systemd/system/harkd-deadman.service",
    "configs/dbus/org.hark.Agent1.conf": "/usr/share/dbus-1/system.d/org.hark.Agent1.conf",
    "configs/udev/70-hark.rules": "/usr/lib/udev/rules.d/70-hark.rules",
    "configs/modules-load.d/hark.conf": "/usr/lib/modules-load.d/hark.conf",
    "configs/sysusers.d/hark.conf": "/usr/lib/sysusers.d/hark.conf",
}
NOT_INSTALLED = {"configs/dev.toml"}  # `make run`'s test-tone config


def git(repo, *args):
    return subprocess.run(["git", "-C", repo, *args], check=True, capture_output=True).stdout.decode()


def installs(body, dest_dir, src_dir):
    """(source, destination) of every `install ... SRC DST` in an expanded shell body."""
    out = []
    for line in body.replace("\\\n", " ").splitlines():
        words = shlex.split(line.strip()) if line.strip().startswith("install ") else []
        if not words or "-d" in words:
            continue
        args, i = [], 1
        while i < len(words):
            if words[i] in ("-m", "-o", "-g", "--mode", "-t"):
                i += 2
                continue
            if words[i].startswith("-"):
                i += 1
                continue
            args.append(words[i])
            i += 1
        if len(args) != 2:
            continue
        src, dst = args
        if dst.endswith("/"):
            dst += os.path.basename(src)
        if not dst.startswith(dest_dir):
            continue
        out.append((os.path.relpath(src, src_dir) if src.startswith(src_dir) else src, dst[len(dest_dir):]))
    return out


def in_files(path, patterns):
    """Does a FILES entry take path (package.bbclass semantics: the path, a
    directory above it, or a glob)?"""
    for p in patterns.split():
        if path == p or path.startswith(p.rstrip("/") + "/") or fnmatch.fnmatchcase(path, p):
            return True
    return False


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("readback")
    ap.add_argument("--buildlist")
    ap.add_argument("--machine", default="")
    ap.add_argument("--repo", default=os.path.normpath(os.path.join(os.path.dirname(__file__), "../..")))
    ap.add_argument("--recipe-rdepends", default="",
                    help="RDEPENDS:${PN} as the recipe writes it (space-separated; from check-gst-elements)")
    a = ap.parse_args()
    with open(a.readback) as f:
        rb = json.load(f)
    errors = []

    def want(cond, msg):
        if not cond:
            errors.append(msg)

    h = rb["harkd"]
    v = lambda name: (h.get(name) or "").strip()
    want(v("SYSTEMD_SERVICE:harkd").split() == ["harkd.service"],
         "SYSTEMD_SERVICE:harkd is %r, expected 'harkd.service'" % v("SYSTEMD_SERVICE:harkd"))
    want(v("SYSTEMD_AUTO_ENABLE:harkd") in ("", "enable"),
         "SYSTEMD_AUTO_ENABLE:harkd is %r, expected enable" % v("SYSTEMD_AUTO_ENABLE:harkd"))
    want(v("CONFFILES:harkd").split() == ["/etc/hark/hark.toml"],
         "CONFFILES:harkd is %r, expected /etc/hark/hark.toml" % v("CONFFILES:harkd"))

    # What do_install installs, and which package takes it.
    tracked = [p for p in git(a.repo, "ls-files", "configs").split() if p not in NOT_INSTALLED]
    want(set(tracked) == set(EXPECTED_DEST),
         "configs/ ships %s, this check knows %s: update EXPECTED_DEST" % (sorted(tracked), sorted(EXPECTED_DEST)))
    done = installs(h.get("do_install") or "", v("D"), v("S"))
    done_cfg = [(s, d) for s, d in done if s.startswith("configs/")]
    for src, dst in EXPECTED_DEST.items():
        got = [d for s, d in done_cfg if s == src]
        want(got == [dst], "do_install puts %s at %s, expected %s" % (src, got or "nowhere", dst))
    for s, d in done_cfg:
        want(s in EXPECTED_DEST, "do_install installs %s (to %s), which is not a configs/ file to ship" % (s, d))
    for s, d in done:
        enabled_unit = os.path.basename(d) in v("SYSTEMD_SERVICE:harkd").split() and "/systemd/" in d
        want(in_files(d, v("FILES:harkd")) or enabled_unit, "%s is installed but in no package (FILES:harkd)" % d)
    unit = os.path.join(a.repo, "configs/systemd/harkd-deadman.service")
    with open(unit) as f:
        want("[Install]" not in f.read(), "harkd-deadman.service has an [Install] section: it would be enabled")

    # The user: USERADD_PARAM as configs/sysusers.d/hark.conf describes it.
    with open(os.path.join(a.repo, "configs/sysusers.d/hark.conf")) as f:
        su = [shlex.split(l) for l in f if l.strip() and not l.startswith("#")]
    users = {l[1]: l for l in su if l[0] == "u"}
    members = {(l[1], l[2]) for l in su if l[0] == "m"}
    up = shlex.split(v("USERADD_PARAM:harkd"))
    want(up and up[-1] in users, "USERADD_PARAM:harkd makes %r, sysusers.d makes %s" % (up[-1:] or None, sorted(users)))
    if up and up[-1] in users:
        u = users[up[-1]]
        opt = {up[i]: up[i + 1] for i in range(len(up) - 1) if up[i].startswith("--")}
        want(opt.get("--comment") == u[3], "USERADD_PARAM comment %r, sysusers.d %r" % (opt.get("--comment"), u[3]))
        want(opt.get("--home-dir") == u[4], "USERADD_PARAM home %r, sysusers.d %r" % (opt.get("--home-dir"), u[4]))
        groups = set((opt.get("--groups") or "").split(","))
        for user, group in members:
            want(user != u[1] or group in groups, "sysusers.d puts %s in %s, USERADD_PARAM does not" % (user, group))
    want("--system hark" in v("GROUPADD_PARAM:harkd"), "GROUPADD_PARAM:harkd does not make group hark")

    # RDEPENDS as computed = the recipe's + the base utilities.
    computed = set(v("RDEPENDS:harkd").split())
    written = set(a.recipe_rdepends.split())
    base_utils = set(v("VIRTUAL-RUNTIME_base-utils").split())
    want(written and computed == written | base_utils,
         "RDEPENDS:harkd is %s; the recipe writes %s + base-utils %s"
         % (sorted(computed), sorted(written), sorted(base_utils)))
    for dep in ("gstreamer1.0-plugins-base-opus", "gstreamer1.0-plugins-base-alsa"):
        want(dep in computed, "RDEPENDS:harkd lacks %s" % dep)

    # License and source.
    m = re.match(r"file://([^;]+);beginline=(\d+);endline=(\d+);md5=([0-9a-f]{32})$", v("LIC_FILES_CHKSUM"))
    want(m, "LIC_FILES_CHKSUM %r is not file://F;beginline=N;endline=M;md5=X" % v("LIC_FILES_CHKSUM"))
    srcrev = v("SRCREV")
    rev_ok = subprocess.run(["git", "-C", a.repo, "merge-base", "--is-ancestor", srcrev, "HEAD"],
                            capture_output=True).returncode == 0
    want(rev_ok, "SRCREV %s is not a commit of this repository's history (an ancestor of HEAD)" % srcrev)
    if m:
        fname, b, e, md5 = m.group(1), int(m.group(2)), int(m.group(3)), m.group(4)
        trees = [("the working tree", open(os.path.join(a.repo, fname), "rb").read())]
        if rev_ok:
            trees.append(("SRCREV", subprocess.run(["git", "-C", a.repo, "show", "%s:%s" % (srcrev, fname)],
                                                   capture_output=True).stdout))
        for name, data in trees:
            lines = data.splitlines(True)[b - 1:e]
            got = hashlib.md5(b"".join(lines)).hexdigest()
            want(got == md5, "LIC_FILES_CHKSUM: lines %d-%d of %s in %s have md5 %s, the recipe says %s"
                 % (b, e, fname, name, got, md5))
            want(b"MIT OR Apache-2.0" in b"".join(lines), "LIC_FILES_CHKSUM lines of %s in %s do not carry the license"
                 % (fname, name))
    if rev_ok:
        at_rev = [p for p in git(a.repo, "ls-tree", "-r", "--name-only", srcrev, "configs").split()
                  if p not in NOT_INSTALLED]
        want(sorted(at_rev) == sorted(tracked), "configs/ at SRCREV %s has %s, the working tree %s"
             % (srcrev[:12], sorted(at_rev), sorted(tracked)))
    want(v("CARGO_MANIFEST_PATH").endswith("/agent/Cargo.toml"), "CARGO_MANIFEST_PATH %r" % v("CARGO_MANIFEST_PATH"))
    want(v("CARGO_LOCK_PATH") == v("S") + "/Cargo.lock", "CARGO_LOCK_PATH %r" % v("CARGO_LOCK_PATH"))

    # The image and the distro.
    img = rb["hark-image"]
    iv = lambda name: (img.get(name) or "").strip()
    want(iv("DISTRO") == "hark", "DISTRO is %r" % iv("DISTRO"))
    want(iv("VIRTUAL-RUNTIME_init_manager") == "systemd", "init manager is %r" % iv("VIRTUAL-RUNTIME_init_manager"))
    want("systemd" in iv("DISTRO_FEATURES").split(), "DISTRO_FEATURES lack systemd")
    want("packagegroup-hark" in iv("IMAGE_INSTALL").split(), "IMAGE_INSTALL lacks packagegroup-hark")
    bad = BAD_IMAGE_FEATURES & set(iv("IMAGE_FEATURES").split())
    want(not bad, "IMAGE_FEATURES has %s" % sorted(bad))
    want(not iv("EXTRA_USERS_PARAMS"), "EXTRA_USERS_PARAMS adds users: %r" % iv("EXTRA_USERS_PARAMS"))
    pg = rb["packagegroup-hark"]
    want({"harkd", "hark-system-conf"} <= set((pg.get("RDEPENDS:packagegroup-hark") or "").split()),
         "packagegroup-hark does not pull harkd and hark-system-conf")
    for recipe, flag in (("gstreamer1.0-plugins-base", "opus"), ("gstreamer1.0-plugins-base", "alsa"),
                         ("gstreamer1.0-plugins-bad", "webrtc"), ("gstreamer1.0-plugins-bad", "srtp"),
                         ("gstreamer1.0-plugins-bad", "dtls"), ("libnice", "gstreamer")):
        want(flag in (rb[recipe].get("PACKAGECONFIG") or "").split(), "%s is built without %s" % (recipe, flag))
    sc = rb["hark-system-conf"]
    sdone = [d for s, d in installs(sc.get("do_install") or "", sc["D"], sc["S"])]
    for want_path in ("/usr/lib/systemd/system.conf.d/50-hark-watchdog.conf",
                      "/usr/lib/systemd/journald.conf.d/50-hark-journal.conf"):
        want(want_path in sdone and in_files(want_path, sc.get("FILES:hark-system-conf") or ""),
             "hark-system-conf does not install and package %s" % want_path)

    if a.buildlist:
        with open(a.buildlist) as f:
            pns = set(f.read().split())
        need = {"harkd", "libopus", "packagegroup-hark", "hark-system-conf", "gstreamer1.0-rtsp-server", "systemd"}
        if a.machine.startswith("raspberrypi"):
            need.add("linux-raspberrypi")
        want(need <= pns, "pn-buildlist lacks %s" % sorted(need - pns))
        ssh = {"openssh", "dropbear"} & pns
        want(not ssh, "the image builds an SSH server: %s" % sorted(ssh))
        want("linux-yocto" in pns or a.machine.startswith("raspberrypi"), "pn-buildlist lacks a kernel")

    for e in errors:
        print("assert-readback: ERROR: %s" % e, file=sys.stderr)
    if not errors:
        print("assert-readback: harkd, hark-image, packagegroup-hark, hark-system-conf as intended%s"
              % (" (%s)" % a.machine if a.machine else ""))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
