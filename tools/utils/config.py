"""Config files: YAML with ``runner:`` and ``hyper_parameters:`` sections, dotted-key access,
``-o key=value`` overrides, validation, and path resolution relative to the config's folder."""
import copy
import difflib
import os
import re

import yaml

from models.common.loading import READER_KEYS, is_module_name
from models.common.spec import SpecError


class _Loader(yaml.SafeLoader):
    """YAML 1.1 reads ``1e-3`` as a string; accept it as the float everybody means."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"""),
    list("-+0123456789"),
)


def parse_yaml(text):
    return yaml.load(text, Loader=_Loader)


class ConfigError(ValueError):
    """A config problem; the message names the file and/or key and what was expected."""


REQUIRED = object()  # marks a runner key that has no default
# Runner keys every model understands: key -> (default, expected type). A default of None means
# "optional": derived from another key or unused when absent.
RUNNER_KEYS = {
    "train_data_dir": (REQUIRED, str),
    "train_reader_path": (REQUIRED, str),
    "train_batch_size": (REQUIRED, int),
    "model_save_path": (REQUIRED, str),
    "epochs": (REQUIRED, int),
    "test_data_dir": (None, str),
    "infer_reader_path": (None, str),  # default: train_reader_path
    "infer_batch_size": (None, int),  # default: train_batch_size
    "infer_load_path": (None, str),  # default: model_save_path
    "infer_start_epoch": (None, int),  # default: the last epoch
    "infer_end_epoch": (None, int),  # exclusive, as in PaddleRec; default: epochs
    "infer_output_path": (None, str),  # folder for per-sample predictions and metrics.json
    "use_gpu": (False, bool),
    "use_fleet": (False, bool),
    "seed": (2021, int),
    "print_interval": (10, int),
    "num_workers": (0, int),
    "shuffle": (False, (bool, str)),  # true: global permutation; block: block-wise (data beyond RAM)
    "shuffle_block_rows": (65536, int),  # shuffle: block - contiguous rows per block
    "shuffle_window_blocks": (8, int),  # shuffle: block - rows are shuffled within this many blocks
    "data_cache_dir": (None, str),  # columnar cache; default: .rec_cache beside the data
    "resume": (False, bool),
    "overwrite": (False, bool),  # a fresh run may delete the checkpoints already in model_save_path
    "skip_bad_lines": (False, bool),
    "valid_data_dir": (None, str),  # validation files (read by infer_reader_path), evaluated every epoch
    "valid_fraction": (None, float),  # or: hold out this last fraction of the training rows
    "early_stop_patience": (0, int),  # stop after this many epochs without a lower validation logloss
}
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


def _type_name(value):
    return type(value).__name__


def _is_kind(value, kind):
    """isinstance, except that a bool is not an int (YAML's true is not 1)."""
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool):
        return bool in kinds
    return isinstance(value, kinds)


def _kind_name(kind):
    return " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))


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
    def apply_overrides(self, items, open_sections=(), spec=None):
        """Apply ``key=value`` strings. Values parse as YAML scalars/lists.

        A key that is not in the config is an error naming the closest existing key, unless it
        lies under one of ``open_sections`` (dotted prefixes the model declares as free-form) or
        is declared in ``spec`` (the model's {key: Param}; its type is checked by ``check_spec``).
        A value of a different type than the current one is an error too.
        """
        known = _flatten(self.data)
        for key, (default, _) in RUNNER_KEYS.items():  # a required key may come from -o
            known.setdefault(f"runner.{key}", None)
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
                is_open = any(key == s or key.startswith(s + ".") for s in open_sections)
                is_section = any(k.startswith(key + ".") for k in known)
                if is_section:
                    raise ConfigError(f"override {key}: this is a section, override its keys instead")
                if not is_open:
                    close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.0)
                    hint = f"; closest existing key: '{close[0]}'" if close else ""
                    raise ConfigError(f"override {key}: no such key in {self.path}{hint}")
            elif key.startswith("runner.") and key[7:] in RUNNER_KEYS:
                kind = RUNNER_KEYS[key[7:]][1]
                if value is not None and not _is_kind(value, kind):
                    raise ConfigError(f"override {key}: expected a value of type {_kind_name(kind)}, "
                                      f"got {value!r} ({_type_name(value)})")
            elif key not in declared and not _compatible(known[key], value):
                raise ConfigError(
                    f"override {key}: expected a value of type {_type_name(known[key])} "
                    f"(like {known[key]!r}), got {value!r} ({_type_name(value)})")
            self.set(key, value)
            known[key] = value
        # Paths typed on the command line are relative to where the user is, not to the file.
        self.resolve_paths(base=os.getcwd(), keys={i.partition("=")[0].strip() for i in items})

    # ---- validation and defaults ------------------------------------------------------------
    def fill_defaults(self):
        """Add the runner keys the file leaves out, so that they can be overridden and read."""
        for section in ("runner", "hyper_parameters"):
            if not isinstance(self.data.get(section), dict):
                raise ConfigError(f"{self.path}: section '{section}:' is missing or not a mapping")
        runner = self.data["runner"]
        for key, (default, _) in RUNNER_KEYS.items():
            if default is not REQUIRED and key not in runner:
                runner[key] = default
        return self

    def validate(self, required=()):
        """Check required keys and the types of the runner keys (call after fill_defaults)."""
        runner = self.data["runner"]
        for key, (default, kind) in RUNNER_KEYS.items():
            value = runner.get(key)
            if value is None:
                if default is REQUIRED:
                    raise ConfigError(f"{self.path}: required key 'runner.{key}' is missing")
                continue
            if not _is_kind(value, kind):
                raise ConfigError(f"{self.path}: 'runner.{key}' must be of type {_kind_name(kind)}, got {value!r}")
        if isinstance(runner["shuffle"], str) and runner["shuffle"] != "block":
            raise ConfigError(f"{self.path}: 'runner.shuffle' must be true, false or block, got {runner['shuffle']!r}")
        for key in ("epochs", "train_batch_size", "infer_batch_size", "print_interval", "shuffle_block_rows",
                    "shuffle_window_blocks"):
            if runner.get(key) is not None and runner[key] < 1:
                raise ConfigError(f"{self.path}: 'runner.{key}' must be at least 1, got {runner[key]!r}")
        for key in ("num_workers", "seed", "infer_start_epoch", "infer_end_epoch"):
            if runner.get(key) is not None and runner[key] < 0:
                raise ConfigError(f"{self.path}: 'runner.{key}' must be >= 0, got {runner[key]!r}")
        for key in required:
            self.require(key)
        return self

    def check_spec(self, spec):
        """Check the keys a model declares ({dotted key: models.common.spec.Param}); absent
        optional keys get their default, ints become floats where a float is declared."""
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


def load_config(path, overrides=(), open_sections=(), required=(), spec=None):
    """Read, complete, override and check a config file."""
    return prepare_config(read_config(path), overrides, open_sections, required, spec)


def prepare_config(config, overrides=(), open_sections=(), required=(), spec=None):
    """Fill runner defaults, resolve paths, apply ``-o`` overrides and validate (the runner keys,
    and the model's declared keys ``spec``, {dotted key: Param}, when given).

    ``runner.infer_load_path`` follows ``runner.model_save_path``: when the file leaves it out or
    sets it to the same folder, it is the (possibly overridden) save path unless it is itself
    overridden - train and infer with ``-o runner.model_save_path=X`` both use X."""
    config.fill_defaults().resolve_paths()
    load_path = config.get("runner.infer_load_path")
    follows_save_path = not load_path or load_path == config.get("runner.model_save_path")
    config.apply_overrides(overrides, open_sections, spec)
    overridden = {item.partition("=")[0].strip() for item in overrides}
    if follows_save_path and "runner.infer_load_path" not in overridden:
        config.set("runner.infer_load_path", config.get("runner.model_save_path"))
    config.validate(required)
    if spec:
        config.check_spec(spec)
    return config


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
