"""Declared config keys: every key a run reads, with its type, range, default and one line of help.

The runner keys (tools/utils/config.py), a model's and its paradigm's ``config_spec``, the
optimizer keys and the keys the data set's reader reads (its ``config_spec``) are all ``Param``s
in dicts ``{dotted key: Param}``. The runners check every declared key before any work starts -
a bad value ends the run with one line naming the key instead of a traceback deep inside paddle -
and fill in the defaults, which are stated here only (a config file sets values; code reads
``config.get(key)`` without a fallback). Declared keys can be set with ``-o`` even when the
config file leaves them out; ``--help-config`` prints them and the readmes table them.
"""

_TYPE_NAMES = {int: "an int", float: "a number", bool: "true or false", str: "a string", list: "a list"}


class ConfigError(ValueError):
    """A config problem; the message names the file and/or key and what was expected."""


class SpecError(ConfigError):
    """A config value outside what the model declares; the message names the key."""


class Param:
    """One config key: ``kind`` (int, float, bool, str or list) and optional constraints.

    ``min`` / ``max``: inclusive bounds; ``above`` / ``below``: exclusive bounds; ``choices``:
    allowed strings (compared case-insensitively); ``also``: strings accepted besides values of
    ``kind`` (``runner.shuffle``: true, false or block); ``items``: a Param every list element must
    satisfy; ``non_empty``: a list needs at least one element. A key with a ``default`` is optional;
    one without is required unless ``required=False``. Floats accept ints (``learning_rate=1`` is
    1.0). ``help``: one line saying what the key does. ``file``: the value names a file the trained
    model depends on (a vocabulary, a catalog): its fingerprint is recorded with the checkpoints and
    a later run with another file is refused. ``scoring``: the trained model's scores depend on the
    value without its parameters showing it (a similarity): evaluating with another one is refused.
    """

    def __init__(self, kind, *, min=None, max=None, above=None, below=None, choices=None, also=(), items=None,
                 non_empty=False, required=None, default=None, help="", file=False, scoring=False):
        if kind not in _TYPE_NAMES:
            raise TypeError(f"Param kind must be one of {[k.__name__ for k in _TYPE_NAMES]}, got {kind!r}")
        self.kind, self.items, self.non_empty = kind, items, non_empty
        self.min, self.max, self.above, self.below = min, max, above, below
        self.choices, self.also = (tuple(choices) if choices else None), tuple(also)
        self.required = default is None if required is None else required
        self.default, self.help, self.file, self.scoring = default, help, file, scoring

    def but(self, **changes):
        """A copy with some attributes changed (a model's own default of a shared key)."""
        copy = Param.__new__(Param)
        copy.__dict__.update(self.__dict__)
        copy.__dict__.update(changes)
        if "default" in changes and changes["default"] is not None:
            copy.required = False
        return copy

    def describe(self):
        """E.g. 'an int >= 1', 'a non-empty list', 'one of Adam, SGD'."""
        if self.choices:
            return "one of " + ", ".join(self.choices)
        if self.kind is bool and self.also:
            return "true, false or " + " or ".join(self.also)
        text = "a non-empty list" if self.kind is list and self.non_empty else _TYPE_NAMES[self.kind]
        bounds = [f">= {self.min}" if self.min is not None else None, f"> {self.above}" if self.above is not None else None,
                  f"<= {self.max}" if self.max is not None else None, f"< {self.below}" if self.below is not None else None]
        bounds = [b for b in bounds if b]
        text += " " + " and ".join(bounds) if bounds else ""
        text += "".join(f" or {value}" for value in self.also)
        return text + (f" (each {self.items.describe()})" if self.kind is list and self.items is not None else "")

    def check(self, key, value):
        """The value to use for ``key`` (ints made floats where a float is declared), or SpecError."""
        if value is None:
            if self.required:
                raise SpecError(f"required key '{key}' is missing (expected {self.describe()})")
            return self.default
        bad = SpecError(f"'{key}' must be {self.describe()}, got {value!r}")
        if isinstance(value, str) and value in self.also:
            return value
        if self.kind is float:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise bad
            value = float(value)
        elif self.kind is int:
            if isinstance(value, bool) or not isinstance(value, int):
                raise bad
        elif self.kind is list:
            if not isinstance(value, (list, tuple)) or (self.non_empty and not value):
                raise bad
            if self.items is not None:
                value = [self.items.check(f"{key}[{i}]", v) for i, v in enumerate(value)]
            return list(value)
        elif not isinstance(value, self.kind):
            raise bad
        if self.choices and str(value).lower() not in {c.lower() for c in self.choices}:
            raise bad
        if self.kind in (int, float) and not (
                (self.min is None or value >= self.min) and (self.max is None or value <= self.max)
                and (self.above is None or value > self.above) and (self.below is None or value < self.below)):
            raise bad
        return value


def positive_int(**kw):
    return Param(int, min=1, **kw)


def positive_ints(**kw):
    """A non-empty list of ints >= 1 (layer sizes)."""
    return Param(list, items=Param(int, min=1), non_empty=True, **kw)
