"""Parsers of the source formats the readers read: each yields ``Chunk``s of parsed columns from one
file, in bounded-size chunks where the format can be streamed, and names the file and line of
anything malformed. The shared layer (models.common.data.cache) then checks every row against the
declared schema and stores it.

- ``SlotParser``: PaddleRec's ``name:value`` text lines (Criteo, the MovieLens retrieval rows);
- ``NpzParser``: ``.npz`` files with one array per column;
- ``NumberRowsParser``: comma-separated rows of numbers, or ``.npy`` shards;
- ``FieldPairParser``: ``id,labels,field:feat,...`` lines (PaddleRec's Ali-CCP format);
- ``ColumnarCSVParser``: a CSV whose header names the schema's columns.
"""
import io
import re

import numpy as np
import pandas as pd

CHUNK_BYTES = 16 << 20  # text read per conversion step: bounds the conversion's memory
_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")  # what pandas' C parser reads as a float


_NAN_TEXTS = ["nan", "NaN", "NAN", "+nan", "-nan"]  # read as NaN (then reported as not finite); "" is no number


class DataFormatError(ValueError):
    """A data file does not have the expected format; the message names file and line."""


class Chunk:
    """Parsed rows of one source file: ``columns`` {column name: array}, ``numbers`` the line
    (or row) number of each row in the file, ``unit`` 'line' or 'row', ``skipped`` the number of
    malformed lines the parser already dropped (with skip_bad_lines), ``names`` {vector column:
    the file's names of its components} when the file names them (a CSV header): what the values
    mean, recorded so that files whose components are in another order are told apart."""

    def __init__(self, columns, numbers, unit="line", skipped=0, bytes_done=None, names=None):
        self.columns, self.numbers, self.unit, self.skipped = columns, numbers, unit, skipped
        self.bytes_done = bytes_done  # for the progress log's ETA
        self.names = names or {}


# ---- PaddleRec's slot text format -------------------------------------------------------------
def iter_line_blocks(path, chunk_bytes=None):
    """Yield (number of the block's first line, bytes of whole lines) reading ``path`` in chunks."""
    chunk_bytes = chunk_bytes or CHUNK_BYTES
    line, rest = 1, b""
    with open(path, "rb") as f:
        while True:
            data = f.read(chunk_bytes)
            if not data:
                break
            data = rest + data
            cut = data.rfind(b"\n") + 1
            if cut == 0:  # no newline yet: keep reading (one very long line)
                rest = data
                continue
            block, rest = data[:cut], data[cut:]
            yield line, block
            line += block.count(b"\n")
    if rest:
        yield line, rest + b"\n"


class SlotParser:
    """Lines of ``name:value`` tokens separated by whitespace, with exactly the slot names
    ``slots`` in this order on every line (PaddleRec's slot format, e.g. Criteo's
    ``click:0 dense_feature:0.1 ... 1:806093 ... 26:227971``). Token j fills column j of the
    schema's layout (the features in declaration order, a vector feature taking ``dim`` tokens).

    Every line's structure is checked in bulk with numpy (token count, slot names, one ``:`` and a
    non-empty value per token); values are parsed by pandas' C parser; only a chunk where parsing
    a value fails is re-read line by line, to name the line.
    """

    def __init__(self, slots):
        self.slots = [str(s) for s in slots]
        self.signature = "slots:" + " ".join(self.slots)
        keys = [s.encode() for s in self.slots]
        self.key_lengths = np.array([len(k) for k in keys], dtype=np.int64)
        self.key_bytes = np.frombuffer(b"".join(keys), dtype=np.uint8)  # a line's keys, concatenated

    def columns_for(self, schema):
        """[(column name, width or None)] in token order; the token count must match."""
        order = declared_columns(schema)  # declaration order (not the storage blocks' order)
        total = sum(w or 1 for _, w in order)
        if total != len(self.slots):
            raise ValueError(f"the schema has {total} columns but the slot format has {len(self.slots)} slots")
        return order

    def read(self, path, schema, skip_bad_lines=False):
        order = self.columns_for(schema)
        done = 0
        for first_line, raw in iter_line_blocks(path):
            done += len(raw)
            matrix, numbers, skipped = self._parse_block(raw, first_line, path, skip_bad_lines)
            yield Chunk(split_columns(matrix, order), numbers, "line", skipped, bytes_done=done)

    # -- bulk structure check --------------------------------------------------------------
    def _check_structure(self, a):
        """For the bytes ``a`` (uint8, whole lines): (index of each line that has tokens, boolean
        'line is well formed' for each of them, number of lines). All in bulk, O(bytes)."""
        newline = a == 10
        token_char = ~(newline | (a == 32) | (a == 9) | (a == 13))
        num_lines = int(newline.sum())
        starts_mask = token_char.copy()
        starts_mask[1:] &= ~token_char[:-1]
        starts = np.flatnonzero(starts_mask)
        ends_mask = token_char.copy()
        ends_mask[:-1] &= ~token_char[1:]
        ends = np.flatnonzero(ends_mask) + 1
        token_line = np.searchsorted(np.flatnonzero(newline), starts)  # newlines before a token = its line
        per_line = np.bincount(token_line, minlength=num_lines)
        lines_with_tokens = np.flatnonzero(per_line)
        ok_line = per_line[lines_with_tokens] == len(self.slots)
        if not len(starts):
            return lines_with_tokens, ok_line, num_lines
        # Position of each token within its line, and the slot expected there.
        first_token_of_line = np.cumsum(per_line) - per_line
        position = np.arange(len(starts)) - first_token_of_line[token_line]
        slot = np.minimum(position, len(self.slots) - 1)
        # Exactly one ':' per token, after a key of the expected length, before a non-empty value.
        colon = np.flatnonzero(a == 58)
        token_of_colon = np.searchsorted(starts, colon, side="right") - 1  # a ':' is a token byte
        colons = np.bincount(token_of_colon, minlength=len(starts))
        colon_at = np.full(len(starts), -1, dtype=np.int64)
        colon_at[token_of_colon] = colon  # meaningful where the token has exactly one ':'
        key_length = colon_at - starts
        token_ok = ((position < len(self.slots)) & (colons == 1) & (key_length == self.key_lengths[slot])
                    & (ends - colon_at > 1))
        bad_tokens = np.bincount(token_line[~token_ok], minlength=num_lines)
        ok_line &= bad_tokens[lines_with_tokens] == 0
        # Key bytes against the slot names: on lines whose every token has the right key length,
        # the key bytes (token start .. ':') of a line are exactly the slot names concatenated.
        good_lines = lines_with_tokens[ok_line]
        keep = np.zeros(num_lines, dtype=bool)
        keep[good_lines] = True
        marks = np.zeros(len(a) + 1, dtype=np.int8)
        keyed = keep[token_line]
        marks[starts[keyed]] += 1
        marks[colon_at[keyed]] -= 1
        keys = a[np.cumsum(marks[:-1], dtype=np.int8).astype(bool)]
        expected = self.key_bytes
        if len(good_lines) and keys.size == len(good_lines) * len(expected):
            matches = (keys.reshape(len(good_lines), len(expected)) == expected).all(axis=1)
            ok_line[np.flatnonzero(ok_line)[~matches]] = False
        elif len(good_lines):  # cannot happen: every good line has exactly the expected key bytes
            raise AssertionError("slot key bytes do not add up")
        return lines_with_tokens, ok_line, num_lines

    def _describe(self, line):
        """Why one line is malformed (slow path, only for lines already known to be bad)."""
        tokens = line.split()
        if len(tokens) != len(self.slots):
            return f"expected {len(self.slots)} fields 'name:value', found {len(tokens)}"
        for position, (token, name) in enumerate(zip(tokens, self.slots), start=1):
            key, sep, value = token.partition(":")
            if not sep or key != name or not value or ":" in value:
                return f"field {position} is {token!r}, expected '{name}:<value>'"
            if not _NUMBER.match(value) and value.lower().lstrip("+-") not in ("nan", "inf", "infinity"):
                return f"field {position} ({name}) has value {value!r}, expected a number"
        return None

    def _parse_block(self, raw, first_line, path, skip_bad_lines):
        lines, ok, _ = self._check_structure(np.frombuffer(raw, dtype=np.uint8))
        skipped, text = 0, None
        if not ok.all():
            text = raw.split(b"\n")
            bad = lines[~ok]
            if not skip_bad_lines:
                line = text[bad[0]].decode("utf-8", errors="replace")
                raise DataFormatError(f"{path}, line {first_line + bad[0]}: {self._describe(line)}")
            skipped, lines = len(bad), lines[ok]
            raw = _join(text, lines)
        matrix = self._parse_values(raw)
        if matrix is None:  # a value is not a number: find the line(s), line by line
            if text is None:
                text = raw.split(b"\n")
            problems = {i: self._describe(text[i].decode("utf-8", errors="replace")) for i in lines}
            bad = [i for i in lines if problems[i] is not None]
            if not bad:  # every line checks out alone: cannot happen
                raise DataFormatError(f"{path}, lines {first_line + lines[0]}-{first_line + lines[-1]}: "
                                      f"could not be parsed")
            if not skip_bad_lines:
                raise DataFormatError(f"{path}, line {first_line + bad[0]}: {problems[bad[0]]}")
            skipped += len(bad)
            lines = np.setdiff1d(lines, bad)
            matrix = self._parse_values(_join(text, lines))
        return matrix, first_line + lines, skipped

    def _parse_values(self, raw):
        """float64 [rows, slots] of the values of well-formed lines, None if one is not a number."""
        if not raw.strip():
            return np.zeros((0, len(self.slots)))
        width = 2 * len(self.slots)
        values = list(range(1, width, 2))
        try:
            frame = pd.read_csv(io.BytesIO(raw.replace(b":", b" ")), sep=r"\s+", header=None,
                                names=range(width), usecols=values, dtype={c: np.float64 for c in values},
                                index_col=False, skip_blank_lines=True, engine="c")
        except (pd.errors.ParserError, ValueError, TypeError, OverflowError):
            return None
        return frame.to_numpy(dtype=np.float64)


class NpzParser:
    """A ``.npz`` file (numpy, loaded with allow_pickle=False: cannot execute code) holding one
    array per column of the schema: 1-D for ids, labels and lengths, [rows, width] for sequences
    and vectors. Read whole as one chunk (the format cannot be streamed); the shared layer then
    checks ids, lengths and labels against the schema, naming file and row."""

    signature = "npz-columns:1"

    def read(self, path, schema, skip_bad_lines=False):
        import zipfile

        try:
            with np.load(path, allow_pickle=False) as data:
                missing = [c for c in schema.slots if c not in data.files]
                if missing:
                    raise DataFormatError(f"{path}: missing column(s) {missing} (the schema declares "
                                          f"{list(schema.slots)})")
                columns = {c: data[c] for c in schema.slots}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:  # not a zip, truncated, objects
            raise DataFormatError(f"{path}: not a readable .npz file ({error})") from None
        n = len(next(iter(columns.values())))
        for name, slot in schema.slots.items():
            values = columns[name]
            expected = (n,) if slot.width is None else (n, slot.width)
            if values.shape != expected:
                raise DataFormatError(f"{path}: column {name} has shape {values.shape}, expected {expected}")
            if values.dtype.kind not in "iubf":
                raise DataFormatError(f"{path}: column {name} holds {values.dtype}, expected numbers")
        yield Chunk(columns, np.arange(n), unit="row")


def _join(text_lines, indices):
    return b"\n".join(text_lines[i] for i in indices) + b"\n" if len(indices) else b""


# ---- rows of numbers: comma-separated text, or .npy shards ---------------------------------------
def declared_columns(schema):
    """[(column name, width or None)] in declaration order: how a row of numbers maps onto the
    schema (a vector feature takes ``dim`` values, a sequence ``max_len`` ids and then its length)."""
    order = []
    for feature in schema.features:
        order.append((feature.name, schema.slots[feature.name].width))
        if hasattr(feature, "length_name"):
            order.append((feature.length_name, None))
    return order


def split_columns(matrix, order):
    """A [rows, values] matrix -> {column name: [rows] or [rows, width]} following ``order``."""
    columns, j = {}, 0
    for name, width in order:
        columns[name] = matrix[:, j] if width is None else matrix[:, j:j + width]
        j += width or 1
    return columns


def parse_delimited_block(raw, first_line, path, width, skip_bad_lines, names=None, count_note=""):
    """Bytes of whole lines of ``width`` comma-separated numbers -> (float64 [rows, width], line
    number of each row, number of skipped lines). Every line's field count is checked in bulk
    with numpy; values are parsed by pandas' C parser; only a block holding a value that is not a
    number is re-read to name its line. Blank lines are no rows. ``names`` names the columns in
    messages; ``count_note`` says where the expected count comes from."""
    a = np.frombuffer(raw, dtype=np.uint8)
    newline = np.flatnonzero(a == 10)
    line_of = lambda positions: np.searchsorted(newline, positions)  # noqa: E731
    separators = np.bincount(line_of(np.flatnonzero(a == 44)), minlength=len(newline))
    visible = np.bincount(line_of(np.flatnonzero((a != 32) & (a != 9) & (a != 13) & (a != 10))),
                          minlength=len(newline))
    lines = np.flatnonzero(visible > 0)
    ok = separators[lines] == width - 1
    skipped, text = 0, None
    if not ok.all():
        bad = lines[~ok]
        if not skip_bad_lines:
            raise DataFormatError(f"{path}, line {first_line + bad[0]}: expected {width} comma-separated values"
                                  f"{count_note}, found {separators[bad[0]] + 1}")
        skipped, lines = len(bad), lines[ok]
    if len(lines) != len(newline):
        text = raw.split(b"\n")
        raw = _join(text, lines)
    matrix = _delimited_values(raw, width)
    if matrix is None:  # a value is not a number: find its line
        frame = pd.read_csv(io.BytesIO(raw), header=None, names=range(width), dtype=str,
                            keep_default_na=False, index_col=False, engine="c")
        cells = frame.apply(lambda c: c.str.strip())
        numeric = cells.apply(lambda c: c.str.match(_NUMBER.pattern)
                              | c.str.lower().str.lstrip("+-").isin(["nan", "inf", "infinity"])).to_numpy(dtype=bool)
        bad_rows = np.flatnonzero(~numeric.all(axis=1))
        if not len(bad_rows):
            raise DataFormatError(f"{path}, lines {first_line + lines[0]}-{first_line + lines[-1]}: could not be parsed")
        if not skip_bad_lines:
            row = bad_rows[0]
            field = int(np.flatnonzero(~numeric[row])[0])
            what = f"column {names[field]!r}" if names else f"field {field + 1}"
            raise DataFormatError(f"{path}, line {first_line + lines[row]}: {what} has value "
                                  f"{cells.iat[row, field]!r}, expected a number")
        skipped += len(bad_rows)
        keep = np.setdiff1d(np.arange(len(lines)), bad_rows)
        matrix = _delimited_values(_join(raw.split(b"\n"), keep), width)
        lines = lines[keep]
    return matrix, first_line + lines, skipped


def _delimited_values(raw, width):
    if not raw.strip():
        return np.zeros((0, width))
    try:
        frame = pd.read_csv(io.BytesIO(raw), header=None, names=range(width),
                            dtype=np.float64, keep_default_na=False, na_values=_NAN_TEXTS, index_col=False,
                            engine="c")
    except (pd.errors.ParserError, ValueError, TypeError, OverflowError):
        return None
    return frame.to_numpy(dtype=np.float64)


class NumberRowsParser:
    """Rows of numbers, the schema's columns in declaration order (``declared_columns``): text
    files of comma-separated values with no header (e.g. ``label,u_1..u_d,i_1..i_d``), or
    ``.npy`` shards holding a 2-D [rows, values] array (read in chunks through a memory map).
    Every row is checked (field count, numbers; then the schema's checks), naming file and line
    (or row of a shard)."""

    signature = "number-rows:1"

    def read(self, path, schema, skip_bad_lines=False):
        order = declared_columns(schema)
        width = sum(w or 1 for _, w in order)
        if path.endswith(".npy"):
            yield from self._read_npy(path, order, width)
            return
        names = [f"{name}[{i}]" if w else name for name, w in order for i in range(w or 1)]
        done = 0
        for first_line, raw in iter_line_blocks(path):
            done += len(raw)
            matrix, numbers, skipped = parse_delimited_block(raw, first_line, path, width, skip_bad_lines, names=names)
            yield Chunk(split_columns(matrix, order), numbers, "line", skipped, bytes_done=done)

    @staticmethod
    def _read_npy(path, order, width):
        try:
            array = np.load(path, mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError) as error:
            raise DataFormatError(f"{path}: not a readable .npy array ({error})") from None
        if array.ndim != 2 or array.shape[1] != width or array.dtype.kind not in "fiu":
            raise DataFormatError(f"{path}: expected a 2-D numeric array with {width} columns "
                                  f"({', '.join(n for n, _ in order)}), found {array.dtype} {array.shape}")
        step = max(1, CHUNK_BYTES // max(1, width * array.dtype.itemsize))
        for start in range(0, len(array), step):
            block = np.asarray(array[start:start + step], dtype=np.float64)
            yield Chunk(split_columns(block, order), np.arange(start, start + len(block)) + 1, "row",
                        bytes_done=(start + len(block)) * width * array.dtype.itemsize)


def parse_spaced_numbers(b):
    """float64 values of a uint8 buffer of numbers separated by spaces (one C-level pass), or None
    when something in it is not a number (numpy then only warns: the warning is made an error)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        try:
            return np.fromstring(b.tobytes(), sep=" ")
        except (ValueError, DeprecationWarning):
            return None


# ---- id,labels,field:feat,... (PaddleRec's Ali-CCP format) -------------------------------------
class FieldPairParser:
    """Lines ``<sample id>,<label 1>,...,<label k>,<field>:<id>,<field>:<id>,...`` (PaddleRec's
    Ali-CCP format for ESMM: ``sample_id,click,buy,101:12,109_14:18,...``). Every ``field:id``
    pair is kept - PaddleRec's reader drops the first pair of each line, this one does not. The
    ids of a field, in line order, fill the sequence feature of that name (``max_len`` columns
    and ``<field>_length``); an absent field has length 0. The sample id is not read.

    Parsed in bulk with numpy over each chunk's bytes: per-line comma and colon counts (every pair
    token has exactly one ``:``), field names (at most 8 bytes) packed into integers and looked
    up, numbers by one ``np.fromstring`` call; a field not in the schema, more ids than a field's
    ``max_len`` or a value that is not a number names the file and line. ``max_len_hint``
    completes the too-many-ids message (which config key to raise)."""

    def __init__(self, labels, fields, max_len_hint=""):
        self.labels, self.fields = [str(x) for x in labels], [str(f) for f in fields]
        self.signature = "field-pairs:1:" + ",".join(self.labels) + ";" + ",".join(self.fields)
        self.max_len_hint = max_len_hint
        codes = np.array([self._pack(f.encode()) for f in self.fields], dtype=np.uint64)
        if any(len(f.encode()) > 8 or ":" in f or "," in f for f in self.fields) or len(set(codes)) != len(codes):
            raise ValueError(f"field names must be distinct, at most 8 bytes, without ':' or ','; got {self.fields}")
        self.order = np.argsort(codes)
        self.codes = codes[self.order]

    @staticmethod
    def _pack(key):
        return int.from_bytes(key.ljust(8, b"\0"), "little")

    def read(self, path, schema, skip_bad_lines=False):
        widths = {f: schema.slots[f].width for f in self.fields}
        done = 0
        for first_line, raw in iter_line_blocks(path):
            done += len(raw)
            columns, numbers, skipped = self._parse_block(raw, first_line, path, widths, skip_bad_lines)
            yield Chunk(columns, numbers, "line", skipped, bytes_done=done)

    def _fail(self, path, line, message, skip_bad_lines, bad_lines):
        if not skip_bad_lines:
            raise DataFormatError(f"{path}, line {line}: {message}")
        bad_lines.add(line)

    def _parse_block(self, raw, first_line, path, widths, skip_bad_lines):
        a = np.frombuffer(raw, dtype=np.uint8)
        newline = np.flatnonzero(a == 10)
        n_lines = len(newline)
        line_of = lambda positions: np.searchsorted(newline, positions)  # noqa: E731
        comma, colon = np.flatnonzero(a == 44), np.flatnonzero(a == 58)
        visible = np.bincount(line_of(np.flatnonzero((a != 32) & (a != 9) & (a != 13) & (a != 10))),
                              minlength=n_lines)
        commas = np.bincount(line_of(comma), minlength=n_lines)
        colons = np.bincount(line_of(colon), minlength=n_lines)
        k = len(self.labels)
        # Token boundaries: a token starts after a comma (or at the line start).
        line_start = np.r_[0, newline[:-1] + 1]
        starts = np.sort(np.r_[line_start, comma + 1])
        ends = np.sort(np.r_[newline, comma])  # each start's token ends at the next comma/newline
        token_line = line_of(starts)
        first_token = np.cumsum(np.bincount(token_line, minlength=n_lines)) - (commas + 1)
        position = np.arange(len(starts)) - first_token[token_line]
        colon_token = np.searchsorted(starts, colon, side="right") - 1
        colons_in = np.bincount(colon_token, minlength=len(starts))
        # Blank lines are no rows; every other line: k labels, pairs with one ':' each, a value.
        is_pair = position > k
        bad_token = (is_pair & (colons_in != 1)) | (~is_pair & (colons_in != 0))
        colon_at = np.full(len(starts), -1, dtype=np.int64)
        colon_at[colon_token] = colon
        key_len = colon_at - starts
        bad_token |= is_pair & ((key_len < 1) | (key_len > 8) | (ends - colon_at < 2))
        bad_line = np.bincount(token_line[bad_token], minlength=n_lines) > 0
        bad_line |= (commas < k) | (colons != np.maximum(commas - k, 0))
        rows = visible > 0
        skipped, bad_lines = 0, set()
        for line in np.flatnonzero(rows & bad_line)[:1 if not skip_bad_lines else None]:
            text = raw[line_start[line]:newline[line]].decode("utf-8", errors="replace").strip()
            self._fail(path, first_line + line, self._describe(text) or "malformed line", skip_bad_lines, bad_lines)
        # Field names -> field index (pairs of good lines only).
        good = rows & ~bad_line
        pair = is_pair & good[token_line]
        p_start, p_len = starts[pair], key_len[pair]
        offsets = np.arange(8)
        gather = np.minimum(p_start[:, None] + offsets, len(a) - 1)
        key_bytes = np.where(offsets < p_len[:, None], a[gather], 0).astype(np.uint8)
        keys = np.ascontiguousarray(key_bytes).view("<u8").reshape(-1)
        where = np.minimum(np.searchsorted(self.codes, keys), len(self.codes) - 1)
        known = self.codes[where] == keys
        pair_line = token_line[pair]
        if not known.all():
            for i in np.flatnonzero(~known)[:1 if not skip_bad_lines else None]:
                name = bytes(key_bytes[i][:p_len[i]]).decode("utf-8", errors="replace")
                self._fail(path, first_line + pair_line[i], f"field {name!r} is not one of the declared fields "
                           f"{self.fields}", skip_bad_lines, bad_lines)
        field = self.order[where]
        # Numbers: blank out the sample id, field names, separators and bad lines; parse the rest.
        id_token = (position == 0) & good[token_line]
        bad_rows = np.flatnonzero(~good)
        opens = np.concatenate([starts[id_token], p_start, line_start[bad_rows]])
        closes = np.concatenate([ends[id_token], colon_at[pair] + 1, newline[bad_rows]])
        mask = (np.bincount(opens, minlength=len(a) + 1) - np.bincount(closes, minlength=len(a) + 1))
        blank = np.cumsum(mask[:-1]) > 0
        b = a.copy()
        b[blank] = 32
        b[comma] = 32
        numbers = parse_spaced_numbers(b)
        expected = int((commas[good] + 1 - 1).sum())  # every token but the sample id
        if numbers is None or len(numbers) != expected:
            # A value is not a number: name the first such line (slow path, lines of this chunk only).
            for line in np.flatnonzero(good):
                text = raw[line_start[line]:newline[line]].decode("utf-8", errors="replace").strip()
                problem = self._describe(text)
                if problem:
                    self._fail(path, first_line + line, problem, skip_bad_lines, bad_lines)
            if not bad_lines:
                raise DataFormatError(f"{path}, lines {first_line}-{first_line + n_lines - 1}: could not be parsed")
            return self._retry(raw, first_line, path, widths, bad_lines)
        if bad_lines:
            return self._retry(raw, first_line, path, widths, bad_lines)
        row_lines = np.flatnonzero(good)
        n = len(row_lines)
        row_of_line = np.full(n_lines, -1, dtype=np.int64)
        row_of_line[row_lines] = np.arange(n)
        per_row = commas[row_lines]  # tokens after the sample id
        row_start = np.cumsum(per_row) - per_row
        columns = {label: numbers[row_start + j] for j, label in enumerate(self.labels)}
        pair_rank_in_row = position[pair] - (k + 1)
        pair_row = row_of_line[pair_line]
        values = numbers[row_start[pair_row] + k + pair_rank_in_row]
        order = np.lexsort((pair_rank_in_row, field, pair_row))
        fr = pair_row[order] * len(self.fields) + field[order]
        group_start = np.r_[0, np.flatnonzero(fr[1:] != fr[:-1]) + 1]
        sizes = np.diff(np.r_[group_start, len(fr)])
        rank = np.arange(len(fr)) - np.repeat(group_start, sizes)
        counts = np.bincount(fr, minlength=n * len(self.fields)).reshape(n, len(self.fields))
        for j, name in enumerate(self.fields):
            width = widths[name] or 1
            over = counts[:, j] > width
            if over.any():
                r = int(np.flatnonzero(over)[0])
                message = (f"field {name!r} has {counts[r, j]} ids, more than its max_len {width}"
                           f"{self.max_len_hint}")
                if not skip_bad_lines:
                    raise DataFormatError(f"{path}, line {first_line + row_lines[r]}: {message}")
                return self._retry(raw, first_line, path, widths,
                                   {first_line + row_lines[i] for i in np.flatnonzero(over)})
        for j, name in enumerate(self.fields):
            width = widths[name] or 1
            sel = field[order] == j
            matrix = np.zeros((n, width), dtype=np.float64)
            matrix[pair_row[order][sel], rank[sel]] = values[order][sel]
            columns[name] = matrix if widths[name] else matrix[:, 0]
            columns[f"{name}_length"] = counts[:, j]
        return columns, first_line + row_lines, skipped

    def _retry(self, raw, first_line, path, widths, bad_lines):
        """Parse the chunk again with the bad lines blanked (skip_bad_lines)."""
        text = raw.split(b"\n")
        for line in bad_lines:
            text[line - first_line] = b""
        columns, numbers, skipped = self._parse_block(b"\n".join(text), first_line, path, widths, True)
        return columns, numbers, skipped + len(bad_lines)

    def _describe(self, line):
        """Why one line is malformed (slow path, for lines already known to be bad)."""
        tokens = line.split(",")
        k = len(self.labels)
        if len(tokens) < k + 1:
            return f"expected '<sample id>,{','.join(self.labels)},<field>:<id>,...', found {len(tokens)} fields"
        for j, label in enumerate(self.labels, start=1):
            value = tokens[j].strip()
            if not _NUMBER.match(value):
                return f"field {j + 1} ({label}) is {value!r}, expected a number"
        for j, token in enumerate(tokens[k + 1:], start=k + 2):
            key, sep, value = token.strip().partition(":")
            if not sep or not key or ":" in value or not value:
                return f"field {j} is {token!r}, expected '<field>:<id>'"
            if not _NUMBER.match(value.strip()):
                return f"field {j} ({key}) has value {value!r}, expected an integer id"
        return None


# ---- columnar CSV ---------------------------------------------------------------------------------
class ColumnarCSVParser:
    """CSV with a header row naming the schema's columns, numbers only, one row per line: a scalar
    feature or label ``x`` is the column ``x``; a vector feature ``v`` of width d (a dense vector,
    or a sequence's ``max_len`` padded ids) is the d columns whose names start with ``v:`` (in
    file order; the rest of the name is free, e.g. ``census:education=Bachelors``); a sequence's
    length is the column ``<name>_length``. Columns the schema does not declare are ignored
    (e.g. a label no configured task uses).

    Parsed in bulk: each line's comma count is checked with numpy (a short or long row names its
    line), values by pandas' C parser; only a chunk where a value is not a number is re-read to
    name the line. Errors name the file and line (the header is line 1)."""

    def __init__(self, width_keys=None, names=None, names_from=None):
        self.width_keys = dict(width_keys or {})  # column -> config key that declares it (for errors)
        # {vector column: its components' header names}: read by name, in this order (else in file order)
        self.names, self.names_from = dict(names or {}), names_from
        self.signature = "columnar-csv:2" + (f":{sorted(self.names.items())}" if self.names else "")

    def read(self, path, schema, skip_bad_lines=False):
        header, positions, done = None, None, 0
        for first_line, raw in iter_line_blocks(path):
            done += len(raw)
            if header is None:
                cut = raw.find(b"\n") + 1
                header = [h.strip() for h in raw[:cut].decode("utf-8", errors="replace").strip().split(",")]
                positions = self._positions(path, header, schema, self.width_keys, self.names, self.names_from)
                raw, first_line = raw[cut:], first_line + 1
            matrix, numbers, skipped = self._parse_block(raw, first_line, path, header, skip_bad_lines)
            columns = {name: matrix[:, cols[0]] if width is None else matrix[:, cols]
                       for name, (width, cols) in positions.items()}
            names = {name: [header[i] for i in cols] for name, (width, cols) in positions.items() if width}
            yield Chunk(columns, numbers, "line", skipped, bytes_done=done, names=names)
        if header is None:
            raise DataFormatError(f"{path}, line 1: empty file, expected a header row naming the columns")

    @staticmethod
    def _positions(path, header, schema, width_keys, names=None, names_from=None):
        """{schema column: (width, [header indices])}; errors name the missing or extra columns."""
        if len(set(header)) != len(header):
            twice = sorted({h for h in header if header.count(h) > 1})
            raise DataFormatError(f"{path}, line 1: column(s) {twice} appear more than once in the header")
        index = {h: i for i, h in enumerate(header)}
        out = {}
        for name, slot in schema.slots.items():
            if slot.width is None:
                if name not in index:
                    raise DataFormatError(f"{path}, line 1: the header has no column {name!r} (declared by "
                                          f"{width_keys.get(name, 'the reader' + chr(39) + 's schema')})")
                out[name] = (None, [index[name]])
            elif names and name in names:  # by name: the order of ``names``, whatever the file's
                wanted, present = names[name], [h for h in header if h.startswith(name + ":")]
                missing, extra = [n for n in wanted if n not in index], sorted(set(present) - set(wanted))
                if missing or extra:
                    raise DataFormatError(f"{path}, line 1: the header "
                                          + (f"has no column {missing[0]!r}" if missing else f"has the column {extra[0]!r}")
                                          + f", which {'is' if missing else 'is not'} among the {len(wanted)} names of "
                                          f"{name} in {names_from}")
                out[name] = (slot.width, [index[n] for n in wanted])
            else:
                cols = [i for i, h in enumerate(header) if h.startswith(name + ":")]
                if len(cols) != slot.width:
                    raise DataFormatError(f"{path}, line 1: the header has {len(cols)} columns '{name}:...', "
                                          f"the schema declares {name} with width {slot.width}"
                                          + (f" ({width_keys[name]})" if name in width_keys else ""))
                out[name] = (slot.width, cols)
        return out

    @staticmethod
    def _parse_block(raw, first_line, path, header, skip_bad_lines):
        return parse_delimited_block(raw, first_line, path, len(header), skip_bad_lines, names=header,
                                     count_note=" (as the header)")
