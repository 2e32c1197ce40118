#!/usr/bin/env python3
"""Read variables of several recipes back from bitbake, in one bitbake session.

Run in an initialised build environment (oe-init-build-env), like
bitbake-getvar: bb-readback.py OUTPUT RECIPE=VAR[,VAR...] ...; writes JSON
{recipe: {var: expanded value}} to OUTPUT (bitbake's messages go to stdout). It uses tinfoil, the same parser that
`bitbake -e RECIPE` uses, with one parse for all recipes (bitbake -e and
bitbake-getvar take one recipe each).

  bb-readback.py out.json harkd=RDEPENDS:harkd,FILES:harkd hark-image=IMAGE_INSTALL
"""

import json
import os
import shutil
import sys


def main():
    bitbake = shutil.which("bitbake")
    if not bitbake:
        sys.exit("bb-readback: bitbake is not in PATH (source oe-init-build-env first)")
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.realpath(bitbake))), "lib"))
    import bb.tinfoil  # noqa: E402  (needs the path above)

    if len(sys.argv) < 3:
        sys.exit("usage: bb-readback.py OUTPUT RECIPE=VAR[,VAR...] ...")
    output = sys.argv[1]
    wanted = []
    for arg in sys.argv[2:]:
        recipe, _, names = arg.partition("=")
        if not recipe or not names:
            sys.exit("bb-readback: expected RECIPE=VAR[,VAR...], got %r" % arg)
        wanted.append((recipe, names.split(",")))
    out = {}
    with bb.tinfoil.Tinfoil() as tinfoil:
        tinfoil.prepare(config_only=False, quiet=2)
        for recipe, names in wanted:
            d = tinfoil.parse_recipe(recipe)
            out.setdefault(recipe, {})
            for name in names:
                out[recipe][name] = d.getVar(name)
    with open(output + ".tmp", "w") as f:
        json.dump(out, f, indent=1, sort_keys=True)
    os.replace(output + ".tmp", output)


if __name__ == "__main__":
    main()
