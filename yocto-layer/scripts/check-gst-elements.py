#!/usr/bin/env python3
"""Check that harkd's recipe RDEPENDS on exactly the GStreamer plugin packages
whose elements harkd creates, and that each of them is a package GStreamer builds.

harkd creates its elements by factory name at run time (ElementFactory::make
and launch descriptions), so neither the linker nor shlibs know about them, and
`bitbake -g` accepts any gstreamer1.0-plugins-{base,good,...}-* name because
oe-core declares plugin packages dynamically (PACKAGES_DYNAMIC). A missing or
misspelt plugin package would only show as a stream that does not start on a
board. This check finds it offline:

1. Elements, from the agent's source (agent/src/**/*.rs, comments removed):
   - the factory name of every ElementFactory::make/make_with_name/find call;
   - the first word of every segment ("a ! b ! c") of every string literal
     (launch descriptions are assembled from literals, also inside format!),
     kept when this host's GStreamer knows an element factory of that name;
     a segment that is written like an element ("name prop=value") but is not
     one is an error, so a typo cannot hide;
   - the elements gst-rtsp-server creates by itself for every RTSP media with
     RTP over UDP and TCP (rtpbin, udpsrc, multiudpsink, appsrc, appsink, queue,
     tee, funnel). Each must appear in this host's libgstrtspserver; its optional
     elements (retransmission, SRTP, ULPFEC) are only created when harkd turns
     those features on, which this check refuses to overlook (see OPTIONAL_RTSP).
   Literals inside a `Codec::X =>` match arm (directly or in format!) belong to
   codec X; the recipe may then carry their packages in PACKAGECONFIG[x]
   instead of RDEPENDS (codecs whose plugins are optional in the image).
2. Element -> plugin file, with this host's gst-inspect-1.0 (Debian's GStreamer
   1.22, same plugin layout as oe-core's 1.28) -> GStreamer module, from the
   Debian source package that ships the file -> oe-core recipe -> package:
   `<recipe>-<plugin>` for recipes that split plugins (they require
   gstreamer1.0-plugins-packaging.inc), the recipe's own package otherwise.
3. A plugin package is one GStreamer builds when: the plugin is one of its
   module's plugins (this host's list), oe-core does not disable it
   (EXTRA_OEMESON "-D<plugin>=disabled"), and, when a PACKAGECONFIG flag of the
   oe-core recipe enables it ("-D<plugin>=enabled"), that flag is in the
   recipe's PACKAGECONFIG as bitbake computed it for the build (--readback, a
   JSON file written by bb-readback.py).

Fails (exit 1) when an element's package is not in RDEPENDS:${PN}, when
RDEPENDS or a PACKAGECONFIG's rdepends name a gstreamer1.0* package that
GStreamer does not build, or that no element needs.
"""

import argparse
import glob
import json
import os
import re
import subprocess
import sys

# Debian source package -> oe-core recipe.
DEBIAN_SOURCE_TO_RECIPE = {
    "gstreamer1.0": "gstreamer1.0",
    "gst-plugins-base1.0": "gstreamer1.0-plugins-base",
    "gst-plugins-good1.0": "gstreamer1.0-plugins-good",
    "gst-plugins-bad1.0": "gstreamer1.0-plugins-bad",
    "gst-plugins-ugly1.0": "gstreamer1.0-plugins-ugly",
    "gst-libav1.0": "gstreamer1.0-libav",
    "gst-rtsp-server1.0": "gstreamer1.0-rtsp-server",
    # meta-oe's libnice ships its GStreamer plugin (nicesrc, nicesink) in its
    # main package when its PACKAGECONFIG has "gstreamer".
    "libnice": "libnice",
}

# Elements libgstrtspserver creates for every media (RTP over UDP and TCP
# interleaved): rtsp-media.c (rtpbin), rtsp-stream.c (udpsrc, multiudpsink,
# appsrc and appsink for TCP, queue, tee, funnel).
RTSP_SERVER_ELEMENTS = ["rtpbin", "udpsrc", "multiudpsink", "appsrc", "appsink",
                        "queue", "tee", "funnel"]
# Elements webrtcbin creates for every session (WHEP listening): ICE
# (libnice's nicesrc/nicesink, named in libgstwebrtcnice), DTLS-SRTP
# (dtlssrtpenc/dec, named in libgstwebrtc, which make srtpenc/dec), and its
# own rtpbin, rtpfunnel, queue and capsfilter (named in the webrtc plugin).
WEBRTCBIN_ELEMENTS = {
    "libgstwebrtcnice-1.0.so.0": ["nicesrc", "nicesink"],
    "libgstwebrtc-1.0.so.0": ["dtlssrtpenc", "dtlssrtpdec"],
    "gstreamer-1.0/libgstwebrtc.so": ["rtpbin", "rtpfunnel", "queue", "capsfilter"],
}
# Made by dtlssrtpenc/dtlssrtpdec themselves.
DTLS_SRTP_ELEMENTS = ["srtpenc", "srtpdec"]
# Created only when the application turns the feature on: a source pattern that
# turns it on, and the elements it brings.
OPTIONAL_RTSP = {
    r"set_retransmission_time|set_do_retransmission": ["rtprtxsend", "rtprtxreceive"],
    r"RTSPProfile::S?AVPF?\b.*SAVP|RTSPProfile::SAVP|set_profiles": ["srtpenc", "srtpdec"],
    r"set_ulpfec|ulpfec": ["rtpulpfecenc", "rtpulpfecdec"],
}

LITERAL = re.compile(r'r(#*)"(.*?)"\1|"((?:[^"\\]|\\.)*)"', re.S)
ARM = re.compile(r"Codec::(\w+)\s*=>\s*(?:format!\s*\(\s*)?$", re.S)
FACTORY = re.compile(r'ElementFactory::(?:make|make_with_name|find)\(\s*"([^"]+)"')
WORD = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
PROPERTY = re.compile(r"^[a-z][a-z0-9-]*=\S+$")


class Failure(Exception):
    pass


def strip_comments(code):
    """Blank out // and /* */ comments, keeping string literals and offsets."""
    out, i, n = [], 0, len(code)
    while i < n:
        m = LITERAL.match(code, i) if code[i] in 'r"' else None
        if m and (code[i] == '"' or (i == 0 or not (code[i - 1].isalnum() or code[i - 1] == "_"))):
            out.append(m.group(0))
            i = m.end()
        elif code.startswith("//", i):
            j = code.find("\n", i)
            j = n if j < 0 else j
            out.append(" " * (j - i))
            i = j
        elif code.startswith("/*", i):
            j = code.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append(re.sub(r"[^\n]", " ", code[i:j]))
            i = j
        elif code[i] == "'" and re.match(r"'(\\.|[^\\'])'", code[i:i + 4]):
            # a char literal such as '"' must not open a string
            m2 = re.match(r"'(\\.|[^\\'])'", code[i:i + 4])
            out.append(m2.group(0))
            i += len(m2.group(0))
        else:
            out.append(code[i])
            i += 1
    return "".join(out)


class Gst:
    """This host's GStreamer: element -> plugin file -> module."""

    def __init__(self):
        self.cache = {}

    def plugin_file(self, element):
        if element not in self.cache:
            r = subprocess.run(["gst-inspect-1.0", element], capture_output=True, text=True)
            if r.returncode != 0 or "Factory Details" not in r.stdout:
                self.cache[element] = None
            else:
                m = re.search(r"^\s*Filename\s+(\S+)", r.stdout, re.M)
                # elements built into libgstreamer (bin, pipeline) have no file
                self.cache[element] = m.group(1) if m and m.group(1) != "(null)" else "<libgstreamer>"
        return self.cache[element]


def dpkg_source_of_file(path):
    if path == "<libgstreamer>":
        return "gstreamer1.0"
    real = os.path.realpath(path)
    for p in {path, real, real.replace("/usr/lib/", "/lib/"), real.replace("/lib/", "/usr/lib/", 1)}:
        r = subprocess.run(["dpkg", "-S", p], capture_output=True, text=True)
        if r.returncode == 0:
            pkg = r.stdout.split(":")[0].strip()
            src = subprocess.run(["dpkg-query", "-W", "-f", "${source:Package}", pkg],
                                 capture_output=True, text=True, check=True).stdout.strip()
            return src or pkg
    raise Failure("no Debian package ships %s" % path)


def module_plugins(source):
    """Plugin names (libgst<name>.so) of every installed package of a Debian source."""
    r = subprocess.run(["dpkg-query", "-W", "-f", "${Package} ${source:Package} ${db:Status-Status}\n"],
                       capture_output=True, text=True, check=True)
    names = set()
    for line in r.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[2] == "installed" and (parts[1] == source or (parts[1] == "" and parts[0] == source)):
            files = subprocess.run(["dpkg", "-L", parts[0]], capture_output=True, text=True).stdout.split()
            for f in files:
                m = re.search(r"/gstreamer-1\.0/libgst([^/]+)\.so$", f)
                if m:
                    names.add(m.group(1))
    return names


def elements_from_source(src_dir, gst):
    """{element: [(file:line, codec or None)]}, and errors."""
    found, errors = {}, []
    files = sorted(glob.glob(os.path.join(src_dir, "**", "*.rs"), recursive=True))
    if not files:
        raise Failure("no Rust sources under %s" % src_dir)
    all_code = ""
    for path in files:
        with open(path) as f:
            code = strip_comments(f.read())
        all_code += code
        rel = os.path.relpath(path, os.path.dirname(os.path.dirname(src_dir)))

        def add(name, pos, codec):
            line = code.count("\n", 0, pos) + 1
            found.setdefault(name, []).append(("%s:%d" % (rel, line), codec))

        for m in FACTORY.finditer(code):
            if gst.plugin_file(m.group(1)) is None:
                errors.append("%s:%d: ElementFactory creates '%s', which this host's GStreamer does not know"
                              % (rel, code.count("\n", 0, m.start()) + 1, m.group(1)))
            add(m.group(1), m.start(), None)
        for m in LITERAL.finditer(code):
            if m.group(0).startswith("r") and m.start() > 0 and (code[m.start() - 1].isalnum() or code[m.start() - 1] == "_"):
                continue
            text = m.group(2) if m.group(2) is not None else m.group(3)
            arm = None
            before = code[:m.start()]
            a = list(re.finditer(r"Codec::(\w+)\s*=>", before))
            if a and ARM.match(before, a[-1].start()) and ARM.match(before, a[-1].start()).end() == len(before):
                arm = a[-1].group(1).lower()
            for seg in text.split("!"):
                words = seg.replace("(", " ").replace(")", " ").split()
                if not words or not WORD.match(words[0]):
                    continue
                name = words[0]
                # "a ! b" or "name key=value ...": launch syntax, not prose
                launch_like = " ! " in text or (
                    len(words) > 1 and all(PROPERTY.match(w) for w in words[1:]))
                if gst.plugin_file(name) is not None:
                    add(name, m.start(), arm)
                elif launch_like:
                    errors.append("%s:%d: '%s' is written like an element in a launch description, "
                                  "but this host's GStreamer has no such element"
                                  % (rel, code.count("\n", 0, m.start()) + 1, name))
    if "webrtcbin" in found:
        for names in WEBRTCBIN_ELEMENTS.values():
            for name in names:
                found.setdefault(name, []).append(("(created by webrtcbin)", None))
        for name in DTLS_SRTP_ELEMENTS:
            found.setdefault(name, []).append(("(created by dtlssrtpenc/dec)", None))
    if "gstreamer_rtsp_server" in all_code:
        for name in RTSP_SERVER_ELEMENTS:
            found.setdefault(name, []).append(("(created by gst-rtsp-server)", None))
        for pattern, names in OPTIONAL_RTSP.items():
            if re.search(pattern, all_code):
                for name in names:
                    found.setdefault(name, []).append(("(gst-rtsp-server feature %s)" % pattern, None))
    return found, errors


def library_strings(name):
    """The words in one of this host's GStreamer libraries (a name under libdir)."""
    r = subprocess.run(["pkg-config", "--variable=libdir", "gstreamer-1.0"],
                       capture_output=True, text=True)
    path = os.path.join(r.stdout.strip() or "/usr/lib", name)
    if not os.path.exists(path):
        raise Failure("%s not found on this host (scripts/install-deps.sh installs it)" % path)
    with open(path, "rb") as f:
        return set(re.findall(rb"[a-z0-9]{3,}", f.read()))


def rtsp_server_library_strings():
    r = subprocess.run(["pkg-config", "--variable=libdir", "gstreamer-rtsp-server-1.0"],
                       capture_output=True, text=True)
    libs = glob.glob(os.path.join(r.stdout.strip() or "/usr/lib", "libgstrtspserver-1.0.so.0*"))
    if not libs:
        raise Failure("libgstrtspserver-1.0.so.0 not found on this host (scripts/install-deps.sh installs it)")
    with open(sorted(libs)[-1], "rb") as f:
        data = f.read()
    return set(re.findall(rb"[a-z0-9]{3,}", data))


def read_bb_assignments(path):
    """Minimal reader of a recipe: joined logical lines."""
    with open(path) as f:
        text = f.read()
    text = re.sub(r"\\\n", " ", text)
    return [l.strip() for l in text.splitlines() if l.strip() and not l.strip().startswith("#")]


def recipe_rdepends(recipe):
    """RDEPENDS:${PN} and PACKAGECONFIG[flag] rdepends of the harkd recipe."""
    rdeps, pkgcfg, default = [], {}, ""
    for line in read_bb_assignments(recipe):
        m = re.match(r'RDEPENDS:\$\{PN\}(?::append)?\s*(\+?=|\?\?=|\?=|=)\s*"(.*)"$', line)
        if m:
            if m.group(1) == "=":
                rdeps = []
            rdeps += m.group(2).split()
        m = re.match(r'PACKAGECONFIG\[([\w-]+)\]\s*=\s*"(.*)"$', line)
        if m:
            fields = (m.group(2).split(",") + [""] * 6)[:6]
            pkgcfg[m.group(1)] = fields[3].split()
        m = re.match(r'PACKAGECONFIG\s*(\?\?=|\?=|=)\s*"(.*)"$', line)
        if m:
            default = m.group(2)
    return [d for d in rdeps if "${" not in d], pkgcfg, default.split()


class OeCore:
    def __init__(self, root):
        self.dir = os.path.join(root, "meta", "recipes-multimedia", "gstreamer")
        if not os.path.isdir(self.dir):
            raise Failure("no GStreamer recipes under %s" % self.dir)

    def recipe_text(self, recipe):
        files = glob.glob(os.path.join(self.dir, recipe + "_*.bb"))
        if len(files) != 1:
            raise Failure("oe-core has %d recipes %s_*.bb in %s" % (len(files), recipe, self.dir))
        return re.sub(r"\\\n", " ", self._read(files[0], 0))

    def _read(self, path, depth):
        """A recipe with the files it requires or includes from its directory."""
        with open(path) as f:
            text = f.read()
        if depth < 5:
            for inc in re.findall(r"^(?:require|include)\s+(\S+)", text, re.M):
                p = os.path.join(self.dir, inc)
                if os.path.exists(p):
                    text += "\n" + self._read(p, depth + 1)
        return text

    def splits(self, recipe):
        if not recipe.startswith("gstreamer1.0"):
            return False  # libnice (meta-oe): one package, plugin included
        return "split_gstreamer10_packages" in self.recipe_text(recipe)

    def condition(self, recipe, plugin):
        """(None, None): built by default; ('flag', f): needs PACKAGECONFIG f;
        ('disabled', why): never built."""
        text = self.recipe_text(recipe)
        opt = re.escape(plugin)
        for m in re.finditer(r'PACKAGECONFIG\[([\w-]+)\]\s*=\s*"([^"]*)"', text):
            enable = m.group(2).split(",")[0]
            if re.search(r"-D%s=enabled\b" % opt, enable):
                return ("flag", m.group(1))
        for m in re.finditer(r'EXTRA_OEMESON\s*\+?=\s*"([^"]*)"', text):
            if re.search(r"-D%s=disabled\b" % opt, m.group(1)):
                return ("disabled", "EXTRA_OEMESON has -D%s=disabled" % plugin)
        return (None, None)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.normpath(os.path.join(here, "../.."))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--agent-src", default=os.path.join(root, "agent", "src"))
    ap.add_argument("--recipe", default=os.path.join(
        root, "yocto-layer", "meta-hark", "recipes-multimedia", "harkd", "harkd_0.1.0.bb"))
    ap.add_argument("--oe-core", help="openembedded-core tree (wrynose)")
    ap.add_argument("--readback", help="JSON from bb-readback.py: PACKAGECONFIG of the GStreamer recipes")
    ap.add_argument("--print-recipe-rdepends", action="store_true",
                    help="print RDEPENDS:${PN} as the recipe writes it and exit")
    ap.add_argument("-v", "--verbose", action="store_true")
    a = ap.parse_args()
    if a.print_recipe_rdepends:
        print(" ".join(recipe_rdepends(a.recipe)[0]))
        return 0
    if not a.oe_core or not a.readback:
        ap.error("--oe-core and --readback are required")

    try:
        return run(a)
    except Failure as e:
        print("check-gst-elements: %s" % e, file=sys.stderr)
        return 1


def run(a):
    gst, oe = Gst(), OeCore(a.oe_core)
    with open(a.readback) as f:
        readback = json.load(f)
    errors = []
    elements, errs = elements_from_source(a.agent_src, gst)
    errors += errs

    lib = rtsp_server_library_strings()
    for name in RTSP_SERVER_ELEMENTS:
        if name.encode() not in lib:
            errors.append("'%s' is not among the names in this host's libgstrtspserver: "
                          "RTSP_SERVER_ELEMENTS is out of date" % name)

    for lib_name, names in WEBRTCBIN_ELEMENTS.items():
        if "webrtcbin" not in elements:
            break
        found = library_strings(lib_name)
        for name in names:
            if name.encode() not in found:
                errors.append("'%s' is not among the names in this host's %s: WEBRTCBIN_ELEMENTS "
                              "is out of date" % (name, lib_name))

    rdeps, pkgcfg, pkgcfg_default = recipe_rdepends(a.recipe)
    recipe_name = os.path.basename(a.recipe)
    modules = {}

    def package_of(element):
        so = gst.plugin_file(element)
        src = dpkg_source_of_file(so)
        recipe = DEBIAN_SOURCE_TO_RECIPE.get(src)
        if recipe is None:
            raise Failure("%s (%s) comes from Debian source %s, which has no oe-core recipe in "
                          "DEBIAN_SOURCE_TO_RECIPE" % (element, so, src))
        if not oe.splits(recipe):
            return so, recipe, recipe, None
        plugin = re.match(r"libgst(.+)\.so$", os.path.basename(so)).group(1)
        return so, recipe, "%s-%s" % (recipe, plugin), plugin

    def validate_package(pkg, where):
        """Is pkg a package GStreamer builds in this configuration?"""
        for recipe in sorted(set(DEBIAN_SOURCE_TO_RECIPE.values()), key=len, reverse=True):
            if pkg == recipe:
                if oe.splits(recipe):
                    return None  # the recipe's main package exists but holds no plugins
                return None
            if pkg.startswith(recipe + "-") and oe.splits(recipe):
                plugin = pkg[len(recipe) + 1:]
                src = [s for s, r in DEBIAN_SOURCE_TO_RECIPE.items() if r == recipe][0]
                if src not in modules:
                    modules[src] = module_plugins(src)
                if plugin not in modules[src]:
                    return ("%s names %s, a plugin package GStreamer does not build: %s has no "
                            "plugin '%s' (its plugins on this host: %s)"
                            % (where, pkg, recipe, plugin, " ".join(sorted(modules[src])) or "none installed"))
                kind, what = oe.condition(recipe, plugin)
                if kind == "disabled":
                    return "%s names %s, which oe-core never builds (%s)" % (where, pkg, what)
                if kind == "flag":
                    have = readback.get(recipe, {}).get("PACKAGECONFIG")
                    if have is None:
                        return ("%s names %s, built only with PACKAGECONFIG '%s' of %s, and the readback "
                                "has no PACKAGECONFIG for %s" % (where, pkg, what, recipe, recipe))
                    if what not in have.split():
                        return ("%s names %s, which is not built: %s is built without PACKAGECONFIG "
                                "'%s' (its PACKAGECONFIG: %s)" % (where, pkg, recipe, what, " ".join(have.split())))
                return None
        return None  # not a GStreamer package: not this check's business

    needed = {}  # package -> (elements, codecs or None when unconditional)
    rows = []
    for element in sorted(elements):
        so, recipe, pkg, plugin = package_of(element)
        codecs = {c for _, c in elements[element]}
        unconditional = None in codecs
        entry = needed.setdefault(pkg, [set(), set(), False])
        entry[0].add(element)
        entry[2] = entry[2] or unconditional
        entry[1] |= {c for c in codecs if c}
        rows.append((element, os.path.basename(so), pkg, elements[element][0][0]))

    for pkg, (els, codecs, unconditional) in sorted(needed.items()):
        where = "element(s) %s" % ", ".join(sorted(els))
        if pkg in rdeps:
            continue
        if not unconditional:
            missing = [c for c in sorted(codecs) if pkg not in pkgcfg.get(c, [])]
            if not missing:
                continue
            errors.append("%s (codec %s) need package %s, which is neither in RDEPENDS:${PN} nor in "
                          "PACKAGECONFIG[%s] of %s" % (where, "/".join(missing), pkg, missing[0], recipe_name))
        else:
            seen = "; ".join("%s at %s" % (e, elements[e][0][0]) for e in sorted(els))
            errors.append("%s need package %s, which is not in RDEPENDS:${PN} of %s (found: %s; a "
                          "string literal whose first word names an element counts as one: if it "
                          "is not, reword the literal)" % (where, pkg, recipe_name, seen))

    named = [(p, "RDEPENDS:${PN} of %s" % recipe_name) for p in rdeps]
    for flag, pkgs in pkgcfg.items():
        named += [(p, "PACKAGECONFIG[%s] of %s" % (flag, recipe_name)) for p in pkgs]
    for pkg, where in named:
        if not pkg.startswith("gstreamer1.0"):
            continue
        err = validate_package(pkg, where)
        if err:
            errors.append(err)
        elif pkg not in needed:
            errors.append("%s names %s, which no element harkd creates needs" % (where, pkg))
    if "libnice" in needed:
        have = readback.get("libnice", {}).get("PACKAGECONFIG")
        if have is None:
            errors.append("element(s) %s need libnice's GStreamer plugin, and the readback has no "
                          "PACKAGECONFIG for libnice" % ", ".join(sorted(needed["libnice"][0])))
        elif "gstreamer" not in have.split():
            errors.append("element(s) %s need libnice's GStreamer plugin, which is not built: libnice "
                          "is built without PACKAGECONFIG 'gstreamer' (its PACKAGECONFIG: %s)"
                          % (", ".join(sorted(needed["libnice"][0])), " ".join(have.split())))
    for flag in pkgcfg_default:
        if flag not in pkgcfg:
            errors.append("PACKAGECONFIG default of %s names '%s', which has no PACKAGECONFIG[%s]"
                          % (recipe_name, flag, flag))

    if a.verbose or errors:
        print("%-16s %-26s %-42s %s" % ("element", "plugin", "package", "first use"))
        for r in rows:
            print("%-16s %-26s %-42s %s" % r)
    for e in errors:
        print("check-gst-elements: ERROR: %s" % e, file=sys.stderr)
    if errors:
        return 1
    print("check-gst-elements: %d elements, %d packages, all in %s" % (len(rows), len(needed), recipe_name))
    return 0


if __name__ == "__main__":
    sys.exit(main())
