"""Reader for the MovieLens MetaEmb splits (datasets/movielens/preprocess_metaemb.py): .npz files
with one array per column

    label, item_id (the "ad" ID), year, title [rows, 8] + title_length, genres [rows, 6] +
    genres_length, user_id, age, gender, occupation

converted once into the columnar cache (models.common.data) and served as dict batches.
Vocabulary sizes come from the config (hyper_parameters.num_items, num_users, title_vocab); an id
outside them is an error naming the file and row.
"""
from models.common.data import CachedDataset, NpzParser
from models.common.features import Label, Schema, SequenceFeature, SparseFeature

ID = "item_id"  # the ID whose embedding MetaEmb generates
ITEM_FEATURES = ["year", "title", "genres"]  # the generator's input (the item's other features)
CONTEXT_FEATURES = ["user_id", "age", "gender", "occupation"]
YEAR_VOCAB, GENRE_VOCAB, AGE_VOCAB, GENDER_VOCAB, OCCUPATION_VOCAB = 128, 19, 7, 2, 21
TITLE_LEN, GENRES_LEN = 8, 6


def schema(config):
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


class RecDataset(CachedDataset):
    def __init__(self, file_list, config):
        super().__init__(file_list, config, schema(config), NpzParser())
