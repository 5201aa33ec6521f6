"""Config files: YAML with ``runner:`` and ``hyper_parameters:`` sections, dotted-key access,
``-o key=value`` overrides, validation, and path resolution relative to the config's folder."""
import copy
import difflib
import json
import os
import re

import yaml

from models.common.loading import READER_KEYS, is_module_name
from models.common.spec import ConfigError, Param, SpecError  # noqa: F401  (ConfigError: tools' name too)


class _Loader(yaml.SafeLoader):
    """YAML 1.1 reads ``1e-3`` as a string; accept it as the float everybody means."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"""),
    list("-+0123456789"),
)


def parse_yaml(text):
    return yaml.load(text, Loader=_Loader)


def _runner(**params):
    return {f"runner.{name}": param for name, param in params.items()}


# The keys every run understands (a model declares its own in config_spec, see models.common.spec).
RUNNER_SPEC = _runner(
    train_data_dir=Param(str, help="folder of the training files (every regular, non-hidden file)"),
    train_reader_path=Param(str, help="the reader: a module of the config's folder or a data set of "
                                      "models/common/datasets (e.g. criteo), or a path to a .py file"),
    train_batch_size=Param(int, min=1, help="rows per training step"),
    model_save_path=Param(str, help="where checkpoints (<epoch>/rec.pdparams, rec.pdopt), run.json and "
                                    "metrics.json go"),
    epochs=Param(int, min=1, help="training epochs"),
    test_data_dir=Param(str, required=False, help="folder of the evaluation files"),
    infer_reader_path=Param(str, required=False, help="the evaluation reader (default: train_reader_path)"),
    infer_batch_size=Param(int, min=1, required=False, help="rows per evaluation batch (default: train_batch_size)"),
    infer_load_path=Param(str, required=False, help="checkpoints to evaluate (default: model_save_path)"),
    infer_start_epoch=Param(int, min=0, required=False,
                            help="first epoch to evaluate (default: the best epoch of a run with validation, "
                                 "else the last)"),
    infer_end_epoch=Param(int, min=0, required=False,
                          help="evaluate the epochs before this one (exclusive, as PaddleRec; default: start + 1)"),
    infer_output_path=Param(str, required=False,
                            help="folder for metrics.json and per-sample predictions (default: "
                                 "<infer_load_path>/<evaluation>)"),
    use_gpu=Param(bool, default=False, help="run on the GPU FLAGS_selected_gpus names (first one)"),
    use_fleet=Param(bool, default=False, help="data parallel over the processes paddle.distributed.launch started"),
    embedding_sharding=Param(str, choices=("none", "row"), default="none",
                             help="use_fleet: row - each rank holds 1/N of the embedding tables' rows (none: all)"),
    seed=Param(int, min=0, default=2021, help="seeds paddle, numpy and the batch plan"),
    print_interval=Param(int, min=1, default=10, help="log every this many batches"),
    num_workers=Param(int, min=0, default=0, help="DataLoader worker processes (0: read in the training process)"),
    shuffle=Param(bool, also=("block",), default=False,
                  help="training order: false, true (a global permutation) or block (block-wise: data beyond RAM)"),
    shuffle_block_rows=Param(int, min=1, default=65536, help="shuffle: block - contiguous rows per block"),
    shuffle_window_blocks=Param(int, min=1, default=8, help="shuffle: block - rows are shuffled within this many blocks"),
    data_cache_dir=Param(str, required=False, help="the columnar cache (default: .rec_cache beside the data)"),
    resume=Param(bool, default=False, help="continue from the last complete epoch in model_save_path"),
    overwrite=Param(bool, default=False, help="a fresh run may delete the checkpoints already in model_save_path"),
    skip_bad_lines=Param(bool, default=False, help="skip malformed rows (counted and logged) instead of stopping"),
    valid_data_dir=Param(str, required=False, help="validation files (read by infer_reader_path), evaluated "
                                                   "every epoch"),
    valid_fraction=Param(float, above=0, below=1, required=False,
                         help="or: hold out this last fraction of the training rows for validation"),
    early_stop_patience=Param(int, min=0, default=0,
                              help="stop after this many epochs without a lower validation logloss (0: never)"),
)
# Sections whose every key must be declared (other top-level keys - sample_data, benchmark - are read
# by tools/demo.py and benchmarks/).
CHECKED_SECTIONS = ("runner", "hyper_parameters")
# Keys naming files or folders: resolved against the config file's folder.
PATH_SUFFIXES = ("_dir", "_path")


def _line_of(error):
    mark = getattr(error, "problem_mark", None)
    return f", line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""


def _flatten(tree, prefix=""):
    """{'a': {'b': 1}} -> {'a.b': 1}; an empty mapping stays a key of its own."""
    flat = {}
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, path + "."))
        else:
            flat[path] = value
    return flat


def _closest(key, known, what="existing"):
    close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.0)
    return f"; closest {what} key: '{close[0]}'" if close else ""


def _type_name(value):
    return type(value).__name__


def _compatible(old, new):
    """Whether ``new`` may replace ``old`` (ints may go where floats are; None accepts anything)."""
    if old is None or new is None:
        return True
    if isinstance(old, bool) or isinstance(new, bool):
        return isinstance(old, bool) and isinstance(new, bool)
    if isinstance(old, float) and isinstance(new, int):
        return True
    if isinstance(old, (list, tuple)):
        return isinstance(new, (list, tuple))
    return isinstance(new, type(old))


class Config:
    """Parsed config. ``get("runner.epochs")`` reads a dotted key; ``path`` is the file it came from."""

    def __init__(self, data, path):
        self.path = os.path.abspath(path)
        self.folder = os.path.dirname(self.path)
        self.data = data

    # ---- access -------------------------------------------------------------------------
    def get(self, key, default=None):
        node = self.data
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                return default
            node = node[part]
        return node

    def require(self, key):
        value = self.get(key)
        if value is None:
            raise ConfigError(f"{self.path}: required key '{key}' is missing")
        return value

    def set(self, key, value):
        node = self.data
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"{self.path}: cannot set '{key}': '{part}' is not a section")
        node[parts[-1]] = value

    def keys(self):
        return sorted(_flatten(self.data))

    def copy(self, values=None):
        """An independent copy, with ``values`` ({dotted key: value}) set in it."""
        other = Config(copy.deepcopy(self.data), self.path)
        for key, value in (values or {}).items():
            other.set(key, value)
        return other

    # ---- overrides ----------------------------------------------------------------------
    def apply_overrides(self, items, spec=None):
        """Apply ``key=value`` strings. Values parse as YAML scalars/lists.

        A key must be in the config file or declared in ``spec`` ({key: Param}, whose types
        ``check_spec`` checks); any other key is an error naming the closest known key. A key the
        file has but nothing declares keeps the type of the file's value.
        """
        known = _flatten(self.data)
        declared = set(spec or ())
        for key in declared:
            known.setdefault(key, None)
        for item in items:
            key, sep, text = item.partition("=")
            key = key.strip()
            if not sep or not key:
                raise ConfigError(f"override {item!r}: expected key=value")
            try:
                value = parse_yaml(text) if text.strip() else None
            except yaml.YAMLError as error:
                raise ConfigError(f"override {key}: value {text!r} is not valid YAML ({error})") from None
            if key not in known:
                if any(k.startswith(key + ".") for k in known):
                    raise ConfigError(f"override {key}: this is a section, override its keys instead")
                raise ConfigError(f"override {key}: no such key in {self.path}{_closest(key, known)}")
            if value is None and key in declared and spec[key].required:
                raise ConfigError(f"override {key}: an empty value would unset it, but it is required "
                                  f"({spec[key].describe()})")
            if key not in declared and not _compatible(known[key], value):
                raise ConfigError(
                    f"override {key}: expected a value of type {_type_name(known[key])} "
                    f"(like {known[key]!r}), got {value!r} ({_type_name(value)})")
            self.set(key, value)
            known[key] = value
        # Paths typed on the command line are relative to where the user is, not to the file.
        self.resolve_paths(base=os.getcwd(), keys={i.partition("=")[0].strip() for i in items})

    # ---- validation and defaults ------------------------------------------------------------
    def check_spec(self, spec, sections=CHECKED_SECTIONS):
        """Check the declared keys ({dotted key: models.common.spec.Param}): type, range, presence;
        absent optional keys get their default, ints become floats where a float is declared.
        A key of ``sections`` that nothing declares is an error naming the closest declared key."""
        for section in ("runner", "hyper_parameters"):
            if not isinstance(self.data.get(section), dict):
                raise ConfigError(f"{self.path}: section '{section}:' is missing or not a mapping")
        for key in sorted(_flatten({s: self.data[s] for s in sections if s in self.data})):
            if key not in spec and not any(k.startswith(key + ".") for k in spec):  # (an empty section is fine)
                hint = (" (YAML reads an unquoted key like 109_14 as a number: quote it)"
                        if key.rsplit(".", 1)[-1].isdigit() else "")
                raise ConfigError(f"{self.path}: unknown key '{key}'{hint}{_closest(key, spec, 'declared')}")
        for key, param in sorted(spec.items()):
            try:
                value = param.check(key, self.get(key))
            except SpecError as error:
                raise ConfigError(f"{self.path}: {error}") from None
            if value is not None or self.get(key) is not None:
                self.set(key, value)
        return self

    def resolve_paths(self, base=None, keys=None):
        """Make relative ``*_dir`` / ``*_path`` values absolute against ``base`` (default: the
        config's folder); only ``keys`` when given."""
        for key, value in _flatten(self.data).items():
            if keys is not None and key not in keys:
                continue
            if key in READER_KEYS.values() and is_module_name(value):
                continue  # a module name (a file of the config's folder or a data set), see models.common.loading
            if key.endswith(PATH_SUFFIXES) and isinstance(value, str) and value:
                self.set(key, os.path.normpath(os.path.join(base or self.folder, os.path.expanduser(value))))
        return self


def load_config(path, overrides=(), spec=None):
    """Read, complete, override and check a config file (see ``prepare_config``)."""
    return prepare_config(read_config(path), overrides, spec)


def prepare_config(config, overrides=(), spec=None):
    """Resolve paths, apply ``-o`` overrides, check every declared key and fill in the defaults.

    ``spec``: the model's declared keys ({dotted key: Param}, the runner keys are always
    declared), or a function of the config that gives them - they may depend on the reader the
    config names, whose override is applied first. With a model spec, a ``hyper_parameters`` key
    nothing declares is an error (without one, only the ``runner`` section is checked).

    ``runner.infer_load_path`` follows ``runner.model_save_path``: when the file leaves it out or
    sets it to the same folder, it is the (possibly overridden) save path unless it is itself
    overridden - train and infer with ``-o runner.model_save_path=X`` both use X."""
    config.resolve_paths()
    load_path = config.get("runner.infer_load_path")
    follows_save_path = not load_path or load_path == config.get("runner.model_save_path")
    overridden = [item.partition("=")[0].strip() for item in overrides]
    if callable(spec):
        readers = [item for item, key in zip(overrides, overridden) if key in READER_KEYS.values()]
        config.apply_overrides(readers, RUNNER_SPEC)
        try:
            spec = spec(config)
        except SpecError as error:
            raise ConfigError(f"{config.path}: {error}") from None
    full = {**RUNNER_SPEC, **(spec or {})}
    config.apply_overrides(overrides, full)
    if follows_save_path and "runner.infer_load_path" not in overridden:
        config.set("runner.infer_load_path", config.get("runner.model_save_path"))
    config.check_spec(full, CHECKED_SECTIONS if spec else ("runner",))
    check_runner(config)
    return config


def check_runner(config):
    """Rules across runner keys that no single declaration can say."""
    get = config.get
    if get("runner.valid_data_dir") and get("runner.valid_fraction") is not None:
        raise ConfigError(f"{config.path}: set runner.valid_data_dir or runner.valid_fraction, not both")
    if get("runner.early_stop_patience") and not get("runner.valid_data_dir") and get("runner.valid_fraction") is None:
        raise ConfigError(f"{config.path}: runner.early_stop_patience needs validation data: set "
                          f"runner.valid_data_dir or runner.valid_fraction")
    if get("runner.embedding_sharding") == "row" and not get("runner.use_fleet"):
        raise ConfigError(f"{config.path}: runner.embedding_sharding=row shards tables over data-parallel ranks: "
                          f"it needs runner.use_fleet=true (and several launched processes)")
    start, end = get("runner.infer_start_epoch"), get("runner.infer_end_epoch")
    if start is not None and end is not None and end <= start:
        raise ConfigError(f"{config.path}: runner.infer_end_epoch ({end}) is exclusive and must be greater than "
                          f"runner.infer_start_epoch ({start})")


def _shown(value):
    return "-" if value is None else json.dumps(value) if isinstance(value, (bool, list)) else str(value)


def describe_keys(spec, config=None, markdown=False):
    """The declared keys as a table: key, what it must be, default, (the config's value,) what it
    does. ``markdown``: the readmes' table (no values: it documents the keys, not one config)."""
    rows = []
    for key, param in sorted(spec.items(), key=lambda item: (not item[0].startswith("runner."), item[0])):
        default = "required" if param.required else _shown(param.default)
        value = [] if markdown or config is None else [_shown(config.get(key))]
        rows.append([key, param.describe(), default, *value, param.help])
    if markdown:
        lines = ["| key | expected | default | what it does |", "|---|---|---|---|"]
        return "\n".join(lines + ["| " + " | ".join(f"`{r[0]}`" if i == 0 else r[i].replace("|", "\\|")
                                                    for i in range(len(r))) + " |" for r in rows])
    header = ["key", "expected", "default", "value", "what it does"][:len(rows[0]) if rows else 5]
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header) - 1)]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(r, widths)) + "  " + str(r[-1])
                     for r in [header] + rows)


def read_config(path):
    """Read a YAML config file; syntax errors name the file and line."""
    if not os.path.isfile(path):
        raise ConfigError(f"config file {path!r} does not exist")
    with open(path, encoding="utf-8") as f:
        text = f.read()
    try:
        data = parse_yaml(text)
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}{_line_of(error)}: invalid YAML: {getattr(error, 'problem', error)}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping with 'runner:' and 'hyper_parameters:' at the top")
    return Config(data, path)
