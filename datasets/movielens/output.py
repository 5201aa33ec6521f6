"""How the MovieLens preprocessing steps write their output (models/common/artifacts.py does the work).

A step's output folder (OUT/retrieval, OUT/metaemb, OUT/pretrained) is one ``Artifact``: written
into a hidden staging folder beside it and renamed into place whole, with a ``manifest.json``; a
folder that already holds files is refused unless ``--replace`` is given. Inside it, every data
folder a config points a ``runner.*_data_dir`` at gets its own manifest (``data_folder``), so a
reader of that folder reads exactly the listed files; all of them, the step folder's manifest and
the step's JSON side files carry the same ``id_space``: one value per run, different whenever the
ids are encoded differently (``id_space``).

    with step_artifact(args.out, "movielens retrieval rows", args.replace) as art:
        ...  # write into art.path
        data_folder(art, "train", "movielens retrieval training rows", {"train.txt": n}, space)
        art.fingerprints["id_space"] = space

The synthetic samples shipped in the repository are written by ``copy_files`` instead: the same
writers into a temporary folder, then each file copied into place under a hidden temporary name
and renamed (no manifests: the shipped bytes stay as they are).
"""
import contextlib
import os
import shutil
import tempfile

from models.common.artifacts import MANIFEST, fingerprint, sole_artifact, write_manifest

DATA_SET = "movielens"


def id_space(step, raw_digest, **decides):
    """The id space of one run of ``step``: a digest of the raw tables and of everything that
    decides the encoded ids (id maps, vocabularies, thresholds, seeds...)."""
    return fingerprint({"data_set": DATA_SET, "step": step, "raw": raw_digest, **decides})


@contextlib.contextmanager
def step_artifact(out, kind, replace=False, command=None):
    """``sole_artifact(out, kind, replace=replace, data_set="movielens")``: one run at a time writes
    ``out``, and what a killed earlier run left beside it is removed first. ``command``: the command
    the manifests record when it is not the process's (a step's ``main(argv)`` called from Python)."""
    about = {"data_set": DATA_SET, **({} if command is None else {"command": list(command)})}
    with sole_artifact(out, kind, replace=replace, **about) as art:
        yield art


def data_folder(art, name, kind, rows, space):
    """The manifest of the data folder ``art.path/name`` (its files, ``rows`` {file: rows}, the id
    space); its rows are also recorded in the step folder's manifest."""
    write_manifest(os.path.join(art.path, name), kind, rows=rows, fingerprints={"id_space": space}, **art.about)
    art.rows.update({f"{name}/{file}": n for file, n in rows.items()})


def copy_files(source, destination):
    """Copy every file under ``source`` (but manifests and hidden files) to the same place under
    ``destination``, each under a hidden temporary name renamed into place when complete."""
    for root, folders, names in os.walk(source):
        folders[:] = sorted(f for f in folders if not f.startswith("."))
        target = os.path.join(destination, os.path.relpath(root, source))
        for name in sorted(n for n in names if not n.startswith(".") and n != MANIFEST):
            os.makedirs(target, exist_ok=True)
            fd, temporary = tempfile.mkstemp(dir=target, prefix=f".{name}.")
            os.close(fd)
            try:
                shutil.copyfile(os.path.join(root, name), temporary)
                shutil.copymode(os.path.join(root, name), temporary)
                os.replace(temporary, os.path.join(target, name))
            except BaseException:
                if os.path.exists(temporary):
                    os.remove(temporary)
                raise
