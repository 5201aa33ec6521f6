"""Declared config keys: what a model reads from its config, with type and range.

A ``DygraphModel`` lists its keys in ``config_spec`` ({dotted key: Param}); the runners check
every declared key before any work starts (tools/utils/config.py), so a bad value ends the run
with one line naming the key instead of a traceback deep inside paddle. Declared keys can be set
with ``-o`` even when the config file leaves them out.
"""

_TYPE_NAMES = {int: "an int", float: "a number", bool: "true or false", str: "a string", list: "a list"}


class SpecError(ValueError):
    """A config value outside what the model declares; the message names the key."""


class Param:
    """One config key: ``kind`` (int, float, bool, str or list) and optional constraints.

    ``min`` / ``max``: inclusive bounds; ``above`` / ``below``: exclusive bounds; ``choices``:
    allowed strings (compared case-insensitively); ``items``: a Param every list element must
    satisfy; ``non_empty``: a list needs at least one element. ``required=False`` keys may be
    absent (then ``default`` applies). Floats accept ints (``learning_rate=1`` is 1.0). ``help``:
    one line saying what the key does (printed by --help-config, tabled in the readmes).
    """

    def __init__(self, kind, *, min=None, max=None, above=None, below=None, choices=None, items=None,
                 non_empty=False, required=True, default=None, help=""):
        if kind not in _TYPE_NAMES:
            raise TypeError(f"Param kind must be one of {[k.__name__ for k in _TYPE_NAMES]}, got {kind!r}")
        self.kind, self.items, self.non_empty = kind, items, non_empty
        self.min, self.max, self.above, self.below = min, max, above, below
        self.choices = tuple(choices) if choices else None
        self.required, self.default, self.help = required, default, help

    def describe(self):
        """E.g. 'an int >= 1', 'a non-empty list', 'one of Adam, SGD'."""
        if self.choices:
            return "one of " + ", ".join(self.choices)
        text = "a non-empty list" if self.kind is list and self.non_empty else _TYPE_NAMES[self.kind]
        bounds = [f">= {self.min}" if self.min is not None else None, f"> {self.above}" if self.above is not None else None,
                  f"<= {self.max}" if self.max is not None else None, f"< {self.below}" if self.below is not None else None]
        bounds = [b for b in bounds if b]
        text += " " + " and ".join(bounds) if bounds else ""
        return text + (f" (each {self.items.describe()})" if self.kind is list and self.items is not None else "")

    def check(self, key, value):
        """The value to use for ``key`` (ints made floats where a float is declared), or SpecError."""
        if value is None:
            if self.required:
                raise SpecError(f"required key '{key}' is missing (expected {self.describe()})")
            return self.default
        bad = SpecError(f"'{key}' must be {self.describe()}, got {value!r}")
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
