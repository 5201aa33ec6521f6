"""The Ali-CCP data set (Ma et al., SIGIR 2018) as the multi-task models read it: PaddleRec's
format, one impression per line, ``sample_id,click,purchase,<field>:<id>,...`` with feature ids
already remapped to ``1 .. sparse_feature_number - 1`` (datasets/ali-ccp/run.sh writes it from
the raw skeleton + common-features files).

The 23 fields ESMM uses (PaddleRec's list) become 23 sequence features sharing one id table,
sum-pooled: single-valued fields have ``max_len`` 1 (absent -> length 0 -> a zero vector, as
PaddleRec's padding id 0 with padding_idx), multi-valued ones (the user's behaviour bags
``109_14`` .. ``150_14``, ``210``, ``853``) up to ``hyper_parameters.max_len.<field>`` ids.
click and purchase are labels only: nothing derived from them is a feature.
"""
from models.common.data import FieldPairParser
from models.common.features import Label, Schema, SequenceFeature
from models.common.spec import Param, SpecError, positive_int

FIELDS = ["101", "109_14", "110_14", "127_14", "150_14", "121", "122", "124", "125", "126", "127", "128",
          "129", "205", "206", "207", "210", "216", "508", "509", "702", "853", "301"]
LABELS = ["click", "purchase"]
MAX_LEN = "hyper_parameters.max_len"
# Defaults sized on PaddleRec's Ali-CCP rows (875-891 pairs; bags of up to ~350 ids).
DEFAULT_MAX_LEN = {"109_14": 256, "110_14": 512, "127_14": 384, "150_14": 384, "210": 64, "853": 16}

CONFIG_SPEC = {
    "hyper_parameters.sparse_feature_number": positive_int(required=False),
    "hyper_parameters.sparse_feature_dim": positive_int(required=False),
    **{f"{MAX_LEN}.{f}": Param(int, min=1, required=False, default=DEFAULT_MAX_LEN.get(f, 1)) for f in FIELDS},
}
REQUIRED = ("hyper_parameters.sparse_feature_number", "hyper_parameters.sparse_feature_dim")


def max_len(config, field):
    return int(config.get(f"{MAX_LEN}.{field}") or DEFAULT_MAX_LEN.get(field, 1))


def schema(config):
    for key in REQUIRED:
        if config.get(key) is None:
            raise SpecError(f"required key '{key}' is missing (Ali-CCP data)")
    vocab = config.get("hyper_parameters.sparse_feature_number")
    dim = config.get("hyper_parameters.sparse_feature_dim")
    features = [Label(name) for name in LABELS]
    features += [SequenceFeature(f, vocab, dim, max_len(config, f), pooling="sum",
                                 shared_with=None if f == FIELDS[0] else FIELDS[0]) for f in FIELDS]
    return Schema(features)


def parser():
    return FieldPairParser(["click", "purchase"], FIELDS,
                           max_len_hint=f" (raise it with -o {MAX_LEN}.<field>=N)")
