#!/usr/bin/env python3
"""Validate the kas files offline (run with the Python of a venv that has kas).

1. Every kas/*.yml validates against kas's own configuration schema.
2. Every repository with a url is pinned (commit), and the commit is the one
   of the upstream tree given for it (--tree NAME=DIR:COMMIT, the commit read
   from the vendored git-archive tarball by `git get-tar-commit-id`); no
   repository is left unchecked.
3. `kas dump` of each machine's file resolves (includes, merge) against local
   copies of the trees: the files are rewritten under --work with path: instead
   of url/commit/branch (kas cannot override a url away), and the dump is
   checked: machine, distro hark, target hark-image, every layer a directory
   with conf/layer.conf, meta-hark among them, and the rpi file accepting the
   synaptics-killswitch license flag its Wi-Fi firmware needs.
"""

import argparse
import glob
import json
import os
import subprocess
import sys

import jsonschema
import yaml
from kas.configschema import CONFIGSCHEMA

EXPECT = {
    "hark-rpi4.yml": {"machine": "raspberrypi4-64", "extra_repos": {"meta-raspberrypi"},
                      "conf": "synaptics-killswitch"},
    "hark-qemuarm64.yml": {"machine": "qemuarm64", "extra_repos": set(), "conf": None},
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kas-dir", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--repo-root", help="the repository with meta-hark (default: the kas directory's parent)")
    ap.add_argument("--tree", action="append", default=[], help="NAME=DIR:COMMIT")
    a = ap.parse_args()
    trees = {}
    for t in a.tree:
        name, _, rest = t.partition("=")
        path, _, commit = rest.rpartition(":")
        trees[name] = (path, commit)

    errors = []
    files = sorted(glob.glob(os.path.join(a.kas_dir, "*.yml")))
    if not files:
        sys.exit("check-kas: no kas files in %s" % a.kas_dir)
    configs = {}
    for f in files:
        with open(f) as fh:
            cfg = yaml.safe_load(fh)
        configs[os.path.basename(f)] = cfg
        try:
            jsonschema.validate(cfg, CONFIGSCHEMA)
        except jsonschema.ValidationError as e:
            errors.append("%s: not a valid kas file: %s (at %s)"
                          % (f, e.message, "/".join(str(p) for p in e.absolute_path)))
        for name, repo in (cfg.get("repos") or {}).items():
            if not repo or "url" not in repo:
                continue
            if name not in trees:
                errors.append("%s: repo %s has no tree to check its pin against" % (f, name))
            elif repo.get("commit") != trees[name][1]:
                errors.append("%s: repo %s is pinned to %s, the vendored tree is %s"
                              % (f, name, repo.get("commit"), trees[name][1]))

    # Offline copies: url/commit/branch replaced by the local tree.
    out_dir = os.path.join(a.work, "kas")
    os.makedirs(out_dir, exist_ok=True)
    for base, cfg in configs.items():
        cfg = json.loads(json.dumps(cfg))
        for name, repo in (cfg.get("repos") or {}).items():
            if repo and "url" in repo:
                for k in ("url", "commit", "branch", "tag"):
                    repo.pop(k, None)
                repo["path"] = trees.get(name, ("/nonexistent/" + name, ""))[0]
        # Includes are relative to the repository root: point them at the copies.
        header = cfg.get("header") or {}
        header["includes"] = [os.path.join(out_dir, os.path.basename(i)) if isinstance(i, str) else i
                              for i in header.get("includes", [])]
        if not header["includes"]:
            del header["includes"]
        with open(os.path.join(out_dir, base), "w") as fh:
            yaml.safe_dump(cfg, fh, sort_keys=False)

    env = dict(os.environ, KAS_WORK_DIR=a.work,
               # The trees live inside the project's work tree; git must not
               # mistake them for it.
               GIT_CEILING_DIRECTORIES=os.path.dirname(list(trees.values())[0][0]) if trees else "")
    repo_root = a.repo_root or os.path.dirname(os.path.abspath(a.kas_dir))
    for base, want in EXPECT.items():
        if base not in configs:
            errors.append("kas/%s is missing" % base)
            continue
        # Dump from the offline copy; kas resolves includes relative to the
        # repository root, so the copy sits at the same relative place.
        r = subprocess.run([os.path.join(os.path.dirname(sys.executable), "kas"), "dump", "--format", "json",
                            os.path.join(out_dir, base)], capture_output=True, text=True, env=env,
                           cwd=repo_root)
        if r.returncode != 0:
            errors.append("kas dump kas/%s failed:\n%s" % (base, r.stderr.strip()))
            continue
        d = json.loads(r.stdout)
        for key, value in (("machine", want["machine"]), ("distro", "hark"), ("target", "hark-image")):
            if d.get(key) != value:
                errors.append("kas/%s: %s is %r, expected %r" % (base, key, d.get(key), value))
        layers = []
        for name, repo in d.get("repos", {}).items():
            root = repo.get("path") or repo_root
            if not os.path.isabs(root):
                root = os.path.join(repo_root, root)
            for layer, state in (repo.get("layers") or {}).items():
                if state in ("disabled", "excluded", "n"):
                    continue
                layers.append(os.path.normpath(os.path.join(root, layer)))
        need = {"meta", "meta-oe", "meta-python", "meta-multimedia", "meta-hark"} | want["extra_repos"]
        have = {os.path.basename(p) for p in layers}
        for n in sorted(need - have):
            errors.append("kas/%s: layer %s is not in the build (layers: %s)" % (base, n, " ".join(layers)))
        for p in layers:
            if not os.path.isfile(os.path.join(p, "conf", "layer.conf")):
                errors.append("kas/%s: layer %s has no conf/layer.conf" % (base, p))
        conf = "\n".join((d.get("local_conf_header") or {}).values())
        if want["conf"] and want["conf"] not in conf:
            errors.append("kas/%s: local_conf_header does not accept %s" % (base, want["conf"]))
        print("check-kas: kas/%s: machine %s, %d layers" % (base, d.get("machine"), len(layers)))

    for e in errors:
        print("check-kas: ERROR: %s" % e, file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
