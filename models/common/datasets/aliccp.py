"""The Ali-CCP data set (Ma et al., SIGIR 2018) as the multi-task models read it: PaddleRec's
format, one impression per line, ``sample_id,click,purchase,<field>:<id>,...`` with feature ids
already remapped to ``1 .. sparse_feature_number - 1`` (datasets/ali-ccp/run.sh writes it from
the raw skeleton + common-features files).

The 23 fields ESMM uses (PaddleRec's list) become 23 sequence features sharing one id table,
sum-pooled: single-valued fields have ``max_len`` 1 (absent -> length 0 -> a zero vector, as
PaddleRec's padding id 0 with padding_idx), multi-valued ones (the user's behaviour bags
``109_14`` .. ``150_14``, ``210``, ``853``) up to ``hyper_parameters.max_len.<field>`` ids.
click and purchase are labels only: nothing derived from them is a feature. Our columnar CSV
form of the same data (header ``click,purchase,<field>:0,..,<field>_length,...``) is read too.
"""
from models.common.data import CachedDataset, ColumnarCSVParser, FieldPairParser
from models.common.data.columns import refuse_rows
from models.common.features import Label, Schema, SequenceFeature
from models.common.spec import Param, SpecError, positive_int

FIELDS = ["101", "109_14", "110_14", "127_14", "150_14", "121", "122", "124", "125", "126", "127", "128",
          "129", "205", "206", "207", "210", "216", "508", "509", "702", "853", "301"]
LABELS = ["click", "purchase"]
MAX_LEN = "hyper_parameters.max_len"
# Defaults sized on PaddleRec's Ali-CCP rows (875-891 pairs; bags of up to ~350 ids).
DEFAULT_MAX_LEN = {"109_14": 256, "110_14": 512, "127_14": 384, "150_14": 384, "210": 64, "853": 16}

CONFIG_SPEC = {
    "hyper_parameters.sparse_feature_number": positive_int(help="rows of the shared id table (ids < it)"),
    "hyper_parameters.sparse_feature_dim": positive_int(help="embedding size of every field"),
    **{f"{MAX_LEN}.{f}": Param(int, min=1, default=DEFAULT_MAX_LEN.get(f, 1),
                               help=f"most ids a row's field {f} holds") for f in FIELDS},
}


def max_len(config, field):
    key = f"{MAX_LEN}.{field}"
    return CONFIG_SPEC[key].check(key, config.get(key))


def check_max_len(config):
    """Every key under hyper_parameters.max_len is a field name (YAML reads an unquoted 109_14 as
    the int 10914 and 210 as an int: such a key would be silently ignored)."""
    node = config.get(MAX_LEN)
    if node is None:
        return
    if not isinstance(node, dict):
        raise SpecError(f"'{MAX_LEN}' must be a mapping of field name to the largest number of ids, got {node!r}")
    for key in node:
        if not isinstance(key, str) or key not in FIELDS:
            hint = " (quote field names in YAML: \"109_14\": 256)" if not isinstance(key, str) else ""
            raise SpecError(f"'{MAX_LEN}' has the key {key!r}, which is not an Ali-CCP field{hint}; "
                            f"fields: {', '.join(FIELDS)}")


def schema(config):
    check_max_len(config)
    vocab = config.get("hyper_parameters.sparse_feature_number")
    dim = config.get("hyper_parameters.sparse_feature_dim")
    features = [Label(name) for name in LABELS]
    features += [SequenceFeature(f, vocab, dim, max_len(config, f), pooling="sum",
                                 shared_with=None if f == FIELDS[0] else FIELDS[0]) for f in FIELDS]
    return Schema(features)


class AliCCPParser:
    """Either form of an Ali-CCP file, chosen per file from its first line: a header starting
    with ``click,`` -> our columnar CSV (``click,purchase,<field>:0,...,<field>_length,...``, the
    schema's own padded layout, as ``datasets/ali-ccp/run.sh --format columnar`` writes it);
    anything else -> PaddleRec's ``sample_id,click,purchase,<field>:<id>,...`` lines."""

    signature = "aliccp-auto:1"

    def __init__(self):
        self.pairs = FieldPairParser(LABELS, FIELDS, max_len_hint=f" (raise it with -o {MAX_LEN}.<field>=N)")
        self.columnar = ColumnarCSVParser({f: f"{MAX_LEN}.{f}" for f in FIELDS})

    def format_of(self, path):
        return "columnar CSV" if self.is_columnar(path) else "PaddleRec field:id lines"

    @staticmethod
    def is_columnar(path):
        with open(path, "rb") as f:
            for line in f:
                if line.strip():
                    return line.lstrip().startswith(b"click,")
        return False

    def read(self, path, schema, skip_bad_lines=False):
        chosen = self.columnar if self.is_columnar(path) else self.pairs
        return chosen.read(path, schema, skip_bad_lines)


def parser():
    return AliCCPParser()


class RecDataset(CachedDataset):
    """The Ali-CCP files (either form), converted once into the columnar cache."""
    config_spec, schema = CONFIG_SPEC, staticmethod(schema)

    def __init__(self, file_list, config):
        super().__init__(file_list, config, schema(config), parser())
        # ESMM's entire space: a purchase is a click that converted
        refuse_rows(self, (self.column("purchase") > 0.5) & (self.column("click") < 0.5),
                    "purchase 1 without a click: a purchase must follow a click (the raw preprocessing refuses these too)")


# benchmarks/benchmark.py --baseline: PaddleRec's line-by-line ESMM reader of the same files
PADDLEREC_FORMAT = "aliccp"
