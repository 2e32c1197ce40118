#!/usr/bin/env python3
"""Compares what nix/tests/eval.nix evaluated (the module, the appliance
profile, package.nix) with the files the project ships, and checks the
rendered settings with the real `harkd check-config`.

usage: check_eval.py EVAL_JSON REPO HARKD JSON2TOML WORKDIR
Exits 1 with one line per failed check.
"""

import json
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

eval_json, repo, harkd, json2toml, workdir = sys.argv[1:6]
repo, workdir = Path(repo), Path(workdir)
workdir.mkdir(parents=True, exist_ok=True)
data = json.loads(Path(eval_json).read_text())
sc = data["scenarios"]
failures = []


def check(ok, message):
    if not ok:
        failures.append(message)
    return ok


def parse_unit(path):
    """systemd unit file -> {section: [(key, value), ...]}, comments and
    continuation lines handled, repeated keys kept in order."""
    sections, section, pending = {}, None, ""
    for raw in Path(path).read_text().splitlines():
        line = pending + raw.strip()
        pending = ""
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            sections.setdefault(section, [])
            continue
        key, _, value = line.partition("=")
        sections[section].append((key.strip(), value.strip()))
    return sections


def keys(unit, section):
    return {k for k, _ in unit.get(section, [])}


def values(unit, section, key):
    return [v for k, v in unit.get(section, []) if k == key]


# --- 1. the service is the shipped unit, and the module does not drift from it ---
shipped = parse_unit(repo / "configs/systemd/harkd.service")
deadman_unit = parse_unit(repo / "configs/systemd/harkd-deadman.service")
pkg = sc["default"]["systemdPackages"]
svc = sc["default"]["services"]["harkd"]
check(len(pkg) == 1, f"systemd.packages should be the harkd package, is {pkg}")
check(svc["overrideStrategy"] == "asDropin",
      "systemd.services.harkd must be a drop-in on the shipped unit (overrideStrategy = \"asDropin\")")
for section, attr in (("Unit", "unitConfig"), ("Service", "serviceConfig")):
    for key, value in svc[attr].items():
        if key in keys(shipped, section):
            check(False, f"drift: the module's drop-in sets {section}.{key}={value!r}, "
                         f"the shipped unit has {values(shipped, section, key)}")
        else:
            check(False, f"drift: the module's drop-in adds {section}.{key}={value!r} "
                         "to the shipped unit; put it in configs/systemd/harkd.service")
# What the module relies on in the shipped unit.
expect = {
    ("Service", "Type"): ["notify"],
    ("Service", "NotifyAccess"): ["main"],
    ("Service", "Restart"): ["on-failure"],
    ("Service", "User"): ["hark"],
    ("Service", "Group"): ["hark"],
    ("Unit", "OnFailure"): ["harkd-deadman.service"],
}
for (section, key), want in expect.items():
    check(values(shipped, section, key) == want,
          f"shipped unit: {section}.{key} is {values(shipped, section, key)}, the module expects {want}")
for key in ("WatchdogSec",):
    check(len(values(shipped, "Service", key)) == 1, f"shipped unit: no Service.{key}")
for key in ("StartLimitIntervalSec", "StartLimitBurst"):
    check(len(values(shipped, "Unit", key)) == 1, f"shipped unit: {key} must be in [Unit]")
    check(not values(shipped, "Service", key), f"shipped unit: {key} in [Service] is ignored by systemd")
etc_path = "/etc/" + sc["default"]["etcFiles"][0] if sc["default"]["etcFiles"] else None
for name, unit in (("harkd.service", shipped), ("harkd-deadman.service", deadman_unit)):
    start = values(unit, "Service", "ExecStart")
    check(len(start) == 1 and start[0].startswith("/usr/bin/harkd "),
          f"{name}: ExecStart {start} must start with /usr/bin/harkd (package.nix replaces it)")
    m = re.search(r"--config (\S+)", start[0] if start else "")
    check(m and m.group(1) == etc_path,
          f"drift: {name} reads {m.group(1) if m else 'no --config'}, the module writes {etc_path}")
state = values(shipped, "Service", "StateDirectory")
check(state == ["hark"], f"shipped unit: StateDirectory is {state}; the module asserts state_dir under /var/lib/hark")
hardening = [(k, v) for k, v in shipped["Service"] if k.startswith(
    ("Protect", "Private", "Restrict", "Capability", "Ambient", "NoNew", "Device", "SystemCall",
     "LockPersonality", "MemoryDeny", "RemoveIPC", "UMask", "ReadWritePaths"))]
check(len(hardening) >= 25, f"only {len(hardening)} hardening lines found in the shipped unit")

# The package installs those very files, with only the binary's path replaced.
post = data["package"]["postInstall"]
for f in ("configs/systemd/harkd.service", "configs/systemd/harkd-deadman.service"):
    check(f in post, f"package.nix does not install {f}")
check("--replace-fail /usr/bin/harkd $out/bin/harkd" in post,
      "package.nix must replace exactly /usr/bin/harkd in the units (--replace-fail)")

# Every program the shipped units and udev rule run by absolute path is
# replaced by a store path (NixOS has no /usr/bin, and /bin holds only sh).
programs = set()
for unit in (shipped, deadman_unit):
    for section in unit.values():
        for k, v in section:
            if k.startswith("Exec") and v:
                programs.add(v.lstrip("-@:+!").split()[0])
rules = (repo / "configs/udev/70-hark.rules").read_text()
programs |= set(re.findall(r'RUN\+="(/\S+)', rules))
for prog in sorted(programs):
    check(f"--replace-fail {prog} " in post,
          f"package.nix does not replace {prog}, which a shipped unit or udev rule runs (missing on NixOS)")

# --- 2. users, groups, D-Bus, udev, modules, as the shipped files say ----------
users = sc["default"]["users"]
sysusers = [shlex.split(l) for l in (repo / "configs/sysusers.d/hark.conf").read_text().splitlines()
            if l.strip() and not l.startswith("#")]
check(users.get("hark", {}).get("isSystemUser") is True, "users.users.hark must be a system user")
check(users.get("hark", {}).get("group") == values(shipped, "Service", "Group")[0],
      "users.users.hark.group differs from the unit's Group=")
want_groups = values(shipped, "Service", "SupplementaryGroups")[0].split()
member_of = [f[2] for f in sysusers if f[0] == "m" and f[1] == "hark"]
check(sorted(users.get("hark", {}).get("extraGroups", [])) == sorted(want_groups) == sorted(member_of),
      f"hark's groups: module {users.get('hark', {}).get('extraGroups')}, unit {want_groups}, sysusers {member_of}")
check("hark" in sc["default"]["groups"], "users.groups.hark is missing")
home = [f[4] for f in sysusers if f[0] == "u" and f[1] == "hark"]
check([users.get("hark", {}).get("home")] == home, f"home: module {users.get('hark', {}).get('home')}, sysusers {home}")
check(sc["default"]["dbusPackages"] == pkg, "services.dbus.packages must carry the package (its D-Bus policy)")
check(sc["default"]["udevPackages"] == pkg, "services.udev.packages must carry the package (its udev rule)")
modules = [l.strip() for l in (repo / "configs/modules-load.d/hark.conf").read_text().splitlines()
           if l.strip() and not l.startswith("#")]
check(sc["default"]["kernelModules"] == modules,
      f"boot.kernelModules {sc['default']['kernelModules']} differs from modules-load.d {modules}")
check(sc["default"]["services"]["harkd"]["wantedBy"] == ["multi-user.target"],
      "harkd must be wanted by multi-user.target (the shipped [Install])")
config_drv = sc["default"]["configFile"]
check(config_drv["buildCommand"].startswith('harkd check-config "$settingsFile"'),
      "the rendered config is not checked with harkd check-config at build time")
check(svc["reloadTriggers"] and svc["reloadTriggers"][0].endswith("-hark.toml"),
      "settings changes must reload harkd (reloadTriggers)")
restart = {n: sc[n]["services"]["harkd"]["restartTriggers"] for n in ("default", "withAlert", "withGain")}
check(restart["withAlert"] != restart["default"],
      "an [[alert]] added must restart harkd (its senders start with it), not only reload it")
check(restart["withGain"] == restart["default"],
      "a gain change must only reload harkd, not restart it")
check("harkd-deadman" not in sc["default"]["services"]
      and sc["deadmanOff"]["services"].get("harkd-deadman", {}).get("enable") is False,
      "deadman.enable = false must mask harkd-deadman.service, and only then")

# --- 3. firewall ------------------------------------------------------------------
check(sc["default"]["tcpPorts"] == [], f"openFirewall=false opens {sc['default']['tcpPorts']}")
check(sc["openFirewall"]["tcpPorts"] == [8554], f"openFirewall opens {sc['openFirewall']['tcpPorts']}, want [8554]")
check(sc["httpExposed"]["tcpPorts"] == [554, 9000],
      f"RTSP 554 + HTTP on 0.0.0.0:9000 opens {sc['httpExposed']['tcpPorts']}, want [554, 9000]")
for name, fired in data["assertionsFire"].items():
    check(fired, f"the module's assertion {name} did not fire")

# --- 4. the rendered settings pass the real harkd, and equal configs/hark.toml ----
def documented_defaults():
    """configs/hark.toml's keys, set or commented out (it shows every key with its default)."""
    text = (repo / "configs/hark.toml").read_text()
    out, table = tomllib.loads(text), None
    for line in text.splitlines():
        m = re.match(r"^(# ?)?(\[\[?)([a-z_.]+)\]", line)
        if m:
            # Keys under a commented-out or array table are not table defaults.
            table = m.group(3) if not m.group(1) and m.group(2) == "[" and "." not in m.group(3) else None
        m = re.match(r"^# ([a-z_]+ = [^#]+?)\s*(#.*)?$", line)
        if m and table:
            try:
                kv = tomllib.loads(m.group(1))
            except tomllib.TOMLDecodeError:
                continue
            for k, v in kv.items():
                out.setdefault(table, {}).setdefault(k, v)
    return out

docs = documented_defaults()


def render(scenario):
    src = sc[scenario]["configFile"]["settingsJson"]
    out = workdir / f"{scenario}.toml"
    subprocess.run([json2toml, src, str(out)], check=True)
    return out


def check_config(path):
    r = subprocess.run([harkd, "check-config", str(path)], capture_output=True, text=True)
    return r.returncode, (r.stdout + r.stderr).replace(str(path), "FILE")


for scenario in ("default", "openFirewall", "httpExposed", "deadmanOff", "withDevices", "appliance"):
    path = render(scenario)
    rc, out = check_config(path)
    check(rc == 0, f"{scenario}: harkd check-config rejects the rendered settings (exit {rc}): {out.strip()}")

rendered = tomllib.loads(render("default").read_text())
for table, entries in rendered.items():
    if isinstance(entries, dict):
        for k, v in entries.items():
            want = docs.get(table, {}).get(k, "<undocumented>")
            check(v == want, f"default settings: {table}.{k} = {v!r}, configs/hark.toml documents {want!r}")
    else:
        check(entries == docs.get(table, []),
              f"default settings: {table} = {entries!r}, configs/hark.toml has {docs.get(table, [])!r}")
for table in docs:
    if table in ("rtsp", "http", "devices", "deadman", "stream") and isinstance(docs[table], dict):
        for k in docs[table]:
            if k in rendered.get(table, {}) or table == "devices":
                continue
            check(False, f"default settings: {table}.{k} is documented but not rendered")
rc_a, out_a = check_config(workdir / "default.toml")
rc_b, out_b = check_config(repo / "configs/hark.toml")
check((rc_a, out_a) == (rc_b, out_b),
      f"harkd sees the module's defaults differently from configs/hark.toml:\n{out_a}\nvs\n{out_b}")

# --- 5. the appliance profile ---------------------------------------------------------
ap, apk = sc["appliance"], sc["applianceWithKey"]
check(ap["hostName"] == "hark", f"appliance hostName is {ap['hostName']}")
check(ap["avahi"]["enable"] and ap["avahi"]["publish"]["enable"] and ap["avahi"]["publish"]["addresses"]
      and ap["avahi"]["nssmdns4"], "appliance: avahi must publish hark.local")
check("<port>8554</port>" in ap["avahi"]["extraServiceFiles"].get("hark-rtsp", ""),
      "appliance: the _rtsp._tcp service must announce the RTSP port")
check(ap["tcpPorts"] == [8554], f"appliance opens {ap['tcpPorts']}, want [8554]")
check("SystemMaxUse" in ap["journald"]["settings"].get("Journal", {}), "appliance: journald is not capped")
check(ap["openssh"]["enable"] is False, "appliance: SSH must be off without a key")
check(apk["openssh"]["enable"] is True and apk["users"]["root"]["openssh"]["authorizedKeys"]["keys"]
      and apk["openssh"]["settings"]["PasswordAuthentication"] is False,
      "appliance: a key must turn SSH on, key-only")

# --- 6. package.nix ---------------------------------------------------------------------
p = data["package"]
check(p["pname"] == "harkd" and p["meta"]["mainProgram"] == "harkd", "package: pname/mainProgram")
check([l["spdxId"] for l in p["meta"]["license"]] == ["MIT", "Apache-2.0"],
      f"package: license {p['meta']['license']} is not MIT OR Apache-2.0")
cargo = tomllib.loads((repo / "Cargo.toml").read_text())
check(p["version"] == cargo["workspace"]["package"]["version"], "package: version differs from Cargo.toml")
check(cargo["workspace"]["package"]["license"] == "MIT OR Apache-2.0", "Cargo.toml's license changed: update meta.license")
for system in ("x86_64-linux", "aarch64-linux"):
    check(system in p["meta"]["platforms"], f"package: {system} not in meta.platforms")
src = Path(p["src"])
check(Path(p["lockFile"]).read_bytes() == (repo / "Cargo.lock").read_bytes(), "package: cargoLock.lockFile is not Cargo.lock")
for f in ("Cargo.toml", "Cargo.lock", "agent/src/main.rs", "agent/tests/fixtures/README.md",
          "hardware-tests/usbip-mic/Cargo.toml", *cargo["workspace"]["members"]):
    check((src / f).exists(), f"package: source filter drops {f}")
for f in ("flake.nix", "nix", "target", "scripts", "Makefile", "README.md"):
    check(not (src / f).exists(), f"package: source filter keeps {f} (rebuilds for nothing)")
for f in re.findall(r"(configs/[\w./-]+)", post):
    check((src / f).is_file(), f"package: postInstall installs {f}, which is not in the source")
tests = p["cargoTestFlags"]
for i, flag in enumerate(tests):
    if flag == "--test":
        check((repo / "agent/tests" / f"{tests[i + 1]}.rs").is_file(), f"package: no test target {tests[i + 1]}")
sources = "".join(f.read_text() for f in (repo / "agent").rglob("*.rs"))
media = "".join(f.read_text() for f in (repo / "agent/src/media").rglob("*.rs"))
for flag in p["checkFlags"]:
    name = flag.removeprefix("--skip=").split("::")[-1]
    check(f"fn {name}(" in sources, f"package: skipped test {name} no longer exists")
for element in p["gstElements"]:
    # gst-rtsp-server's and webrtcbin's own elements are made by them, not named by the agent.
    made_for_us = ("rtpbin", "udpsrc", "udpsink", "queue", "capsfilter", "rtpfunnel", "dtlssrtpenc",
                   "dtlssrtpdec", "srtpenc", "srtpdec", "nicesrc", "nicesink")
    check(re.search(rf"\b{re.escape(element)}\b", media) or element in made_for_us,
          f"package: element {element} is not used by the agent")
for element in set(re.findall(r'"([a-z0-9_]+(?:src|sink|enc|pay|parse|convert|resample|limit))[ "]', media)):
    check(element in p["gstElements"], f"package: the agent uses {element}, the plugin set does not check it")
check(data["overlay"] == "harkd", "overlays.default does not provide harkd")

if failures:
    print("\n".join(f"FAIL {f}" for f in failures))
    sys.exit(1)
print(f"ok: module, appliance and package checked ({len(hardening)} hardening lines of the shipped unit "
      f"kept verbatim; 6 rendered configs pass harkd check-config)")
