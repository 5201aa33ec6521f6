"""Write the config-key tables of the readmes from the declarations (models/common/spec.py):

    python tools/config_doc.py            # rewrite every table
    python tools/config_doc.py --check    # list the readmes whose table is out of date; exit 1 if any

README.md tables the runner keys; each models/<area>/<model>/readme.md the keys a run of its
config.yaml reads besides them (the model's, its paradigm's, the optimizer's and the data set's),
between the two marker lines below (a readme without them gets a "Config keys" section at the end).
"""
import argparse
import glob
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import tools.utils  # noqa: E402

tools.utils.prepare_process()  # before paddle is imported: see tools/utils/__init__.py

from tools.utils.config import RUNNER_SPEC, describe_keys  # noqa: E402
from tools.utils.runtime import load_model  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BEGIN = "<!-- config keys: written by tools/config_doc.py from the declarations; do not edit by hand -->"
END = "<!-- end of config keys -->"


def model_table(config_path):
    config, dygraph_model = load_model(config_path)
    spec = dygraph_model.full_config_spec(config)
    return describe_keys({k: p for k, p in spec.items() if k not in RUNNER_SPEC}, markdown=True)


def tables():
    """{readme path: the table it should hold}."""
    out = {os.path.join(REPO, "README.md"): describe_keys(RUNNER_SPEC, markdown=True)}
    for config in sorted(glob.glob(os.path.join(REPO, "models", "*", "*", "config.yaml"))):
        out[os.path.join(os.path.dirname(config), "readme.md")] = model_table(config)
    return out


def with_table(text, table):
    block = f"{BEGIN}\n{table}\n{END}"
    if BEGIN in text and END in text:
        return text[:text.index(BEGIN)] + block + text[text.index(END) + len(END):]
    return text.rstrip("\n") + f"\n\n## Config keys\n\nWhat a run of `config.yaml` reads besides the runner keys " \
                               f"(README.md); `--help-config` prints them with their values.\n\n{block}\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report the readmes that are out of date")
    args = parser.parse_args(argv)
    stale = []
    for path, table in tables().items():
        with open(path, encoding="utf-8") as f:
            text = f.read()
        wanted = with_table(text, table)
        if wanted != text:
            stale.append(os.path.relpath(path, REPO))
            if not args.check:
                with open(path, "w", encoding="utf-8") as f:
                    f.write(wanted)
    if stale:
        print(("out of date (run python tools/config_doc.py): " if args.check else "rewrote: ") + ", ".join(stale))
    return 1 if stale and args.check else 0


if __name__ == "__main__":
    sys.exit(main())
