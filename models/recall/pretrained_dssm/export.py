"""Tower outputs of a trained pretrained-vector two-tower model, and its towers as inference models:

    python models/recall/pretrained_dssm/export.py -m config.yaml --vectors DIR --out OUT [--epoch N]

DIR holds ``users.npy`` + ``users.txt`` and/or ``items.npy`` + ``items.txt``; OUT gets the towers'
outputs and the nearest-neighbour search vectors (see dygraph_model.py). This is tools/export.py.
"""
import os
import runpy

if __name__ == "__main__":
    runpy.run_path(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "tools", "export.py"),
                   run_name="__main__")
