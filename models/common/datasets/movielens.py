"""MovieLens (ml-100k, ml-1m) in the two forms the models read:

- the retrieval rows every two-tower model reads (``RecDataset``; datasets/movielens/
  preprocess_retrieval.py, or the synthetic sample's make_sample.py, writes them);
- MetaEmb's cold-start splits (``ColdStartDataset``; datasets/movielens/preprocess_metaemb.py).

Retrieval rows. ``hyper_parameters.dataset_info_path`` names the data set's ``dataset.json``: vocabulary sizes,
history length and the item catalog (genres and training count of every item id). Rows are
PaddleRec slot lines ``user_id gender age occupation zip hist*H hist_length item_id``; the
history is a sequence feature that shares the item-id embedding table. Genres are not in the
rows: the item tower looks them up by item id in the catalog (``ItemCatalog``), so that sampled
negatives and the whole catalog go through the same tower as the positives.
"""
import json
import os

import numpy as np
import paddle
import paddle.nn as nn

from models.common.data import CachedDataset, NpzParser, SlotParser
from models.common.data.columns import refuse_rows
from models.common.features import Label, Schema, SequenceFeature, SparseFeature
from models.common.spec import Param, SpecError, positive_int

USER_FEATURES = ("user_id", "gender", "age", "occupation", "zip")
INFO_KEY = "hyper_parameters.dataset_info_path"
EMBED_DIM = {"hyper_parameters.embed_dim": positive_int(help="embedding size of every feature")}
CONFIG_SPEC = {INFO_KEY: Param(str, file=True, help="the data set's dataset.json (vocabularies, history length, "
                                                    "item catalog)"), **EMBED_DIM}
_INFO = {}


def dataset_info(config):
    """The parsed dataset.json named by ``hyper_parameters.dataset_info_path`` (read once per path)."""
    path = config.get(INFO_KEY)
    if not path or not os.path.isfile(path):
        raise FileNotFoundError(f"{INFO_KEY}: {path!r} does not exist (written by "
                                f"datasets/movielens/preprocess_retrieval.py next to train/ and test/)")
    stat = os.stat(path)
    key = (path, stat.st_size, stat.st_mtime_ns)
    if key not in _INFO:
        try:
            with open(path, encoding="utf-8") as f:
                info = json.load(f)
            for field in ("max_history", "max_genres", "vocab", "item_genres", "item_count"):
                info[field]  # noqa: B018 - presence check
        except (ValueError, KeyError) as error:
            raise SpecError(f"{INFO_KEY}: {path} is not a retrieval dataset.json ({error})") from None
        _INFO[key] = info
    return _INFO[key]


def schema(config):
    """The rows' schema: user features, the history (sharing item_id's table), the target item."""
    info, dim = dataset_info(config), config.get("hyper_parameters.embed_dim")
    vocab = info["vocab"]
    return Schema([SparseFeature(name, vocab[name], dim) for name in USER_FEATURES]
                  + [SequenceFeature("hist", vocab["item_id"], dim, info["max_history"], "mean", shared_with="item_id"),
                     SparseFeature("item_id", vocab["item_id"], dim)])


def embedded_features(config):
    """What the model embeds: the rows' features plus the catalog's genres (mean pooled)."""
    info, dim = dataset_info(config), config.get("hyper_parameters.embed_dim")
    return schema(config).features + [SequenceFeature("genre", info["vocab"]["genre"], dim, info["max_genres"], "mean")]


def slot_names(max_history):
    """The slot names of a retrieval row, in order."""
    return list(USER_FEATURES) + ["hist"] * max_history + ["hist_length", "item_id"]


class ItemCatalog(nn.Layer):
    """Item id -> the item tower's batch {item_id, genre, genre_length}; the genres are buffers
    (data, not parameters: not in checkpoints)."""

    def __init__(self, info):
        super().__init__()
        width = info["max_genres"]
        genres = np.zeros((len(info["item_genres"]), width), dtype="int64")
        lengths = np.zeros(len(info["item_genres"]), dtype="int64")
        for item, ids in enumerate(info["item_genres"]):
            genres[item, :len(ids)] = ids
            lengths[item] = len(ids)
        self.num_items = len(lengths)
        self.register_buffer("genres", paddle.to_tensor(genres), persistable=False)
        self.register_buffer("lengths", paddle.to_tensor(lengths), persistable=False)

    def forward(self, ids):
        return {"item_id": ids, "genre": paddle.gather(self.genres, ids), "genre_length": paddle.gather(self.lengths, ids)}


class RecDataset(CachedDataset):
    config_spec, schema = CONFIG_SPEC, staticmethod(schema)

    def __init__(self, file_list, config):
        super().__init__(file_list, config, schema(config), SlotParser(slot_names(dataset_info(config)["max_history"])))
        refuse_rows(self, self.column("item_id") == 0, "item_id 0 is the padding id, not an item")


# ---- MetaEmb's cold-start splits --------------------------------------------------------------
# .npz files with one array per column (COLDSTART_COLUMNS): label (rating >= 4), item_id (the "ad"
# ID), year, title [rows, 8] + title_length, genres [rows, 6] + genres_length, user_id, age (7
# buckets), gender, occupation. Vocabulary sizes of the ids that depend on the data come from the
# config (hyper_parameters.num_items, num_users, title_vocab); an id outside them is an error
# naming the file and row.
ID = "item_id"  # the ID whose embedding MetaEmb generates
ITEM_FEATURES = ["year", "title", "genres"]  # the generator's input (the item's other features)
CONTEXT_FEATURES = ["user_id", "age", "gender", "occupation"]
TITLE_LEN = 8  # words of a title (the official code's pad_sequences(maxlen=8))
GENRES_LEN = 6  # the most genres a MovieLens movie lists
YEAR_BASE, YEAR_VOCAB = 1900, 128  # year id = year - 1900 in [1, 127]; 0 = unknown or earlier
GENRE_VOCAB, AGE_VOCAB, GENDER_VOCAB, OCCUPATION_VOCAB = 19, 7, 2, 21
COLDSTART_SPEC = {
    "hyper_parameters.num_items": positive_int(help="item_id vocabulary (ids < it)"),
    "hyper_parameters.num_users": positive_int(help="user_id vocabulary (ids < it)"),
    "hyper_parameters.title_vocab": positive_int(help="title word vocabulary (ids < it)"),
    **EMBED_DIM,
}
COLDSTART_COLUMNS = ["label", "item_id", "year", "title", "title_length", "genres", "genres_length",
                     "user_id", "age", "gender", "occupation"]


def coldstart_schema(config):
    dim = config.get("hyper_parameters.embed_dim")
    return Schema([
        Label("label"),
        SparseFeature(ID, config.get("hyper_parameters.num_items"), dim),
        SparseFeature("year", YEAR_VOCAB, dim),
        SequenceFeature("title", config.get("hyper_parameters.title_vocab"), dim, max_len=TITLE_LEN),
        SequenceFeature("genres", GENRE_VOCAB, dim, max_len=GENRES_LEN),
        SparseFeature("user_id", config.get("hyper_parameters.num_users"), dim),
        SparseFeature("age", AGE_VOCAB, dim),
        SparseFeature("gender", GENDER_VOCAB, dim),
        SparseFeature("occupation", OCCUPATION_VOCAB, dim),
    ])


class ColdStartDataset(CachedDataset):
    config_spec, schema = COLDSTART_SPEC, staticmethod(coldstart_schema)

    def __init__(self, file_list, config):
        super().__init__(file_list, config, coldstart_schema(config), NpzParser())
