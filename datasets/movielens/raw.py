"""Read a raw MovieLens copy (ml-100k or ml-1m, as GroupLens ships them) into three uniform tables.

    ratings: user_id, item_id, rating, timestamp   (int64; sorted by user_id, timestamp, item_id)
    users:   user_id, gender ('M'/'F'), age (int), occupation (str), zip (str)
    items:   item_id, title (str, year removed), year (int, 0 if unknown), genres (tuple of str)

The format is detected from the file names (``u.data`` -> ml-100k, ``ratings.dat`` -> ml-1m).
ml-1m's age is its bucket code (1, 18, 25, ...) and its occupation a code, both kept as given;
ml-100k's age is in years. The models' preprocessing label-encodes what it uses, so either works.
Every file is checked: a missing file, a wrong field count or a rating/user/item that does not
parse names the file and line.

    python datasets/movielens/raw.py DIR    prints the layout of DIR (ml-100k or ml-1m), or one
                                            error line and exit status 2 (run.sh uses it)
"""
import hashlib
import json
import os
import re
import sys

import numpy as np
import pandas as pd

ML100K_GENRES = ["unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
                 "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
                 "Romance", "Sci-Fi", "Thriller", "War", "Western"]
_YEAR = re.compile(r"\s*\((\d{4})\)\s*$")


class RawFormatError(ValueError):
    """A raw MovieLens file does not have the expected format (the message names file and line)."""


def detect(raw_dir):
    """'ml-100k' or 'ml-1m' from the files in ``raw_dir``; a clear error otherwise."""
    if os.path.isfile(os.path.join(raw_dir, "u.data")):
        return "ml-100k"
    if os.path.isfile(os.path.join(raw_dir, "ratings.dat")):
        return "ml-1m"
    raise FileNotFoundError(f"{raw_dir}: neither u.data (ml-100k) nor ratings.dat (ml-1m) found")


def digest(ratings, users, items):
    """A short digest of the three tables (as ``load`` returns them): equal for equal contents."""
    h = hashlib.sha256()
    for column in ("user_id", "item_id", "rating", "timestamp"):
        h.update(column.encode() + b"\0" + ratings[column].to_numpy(np.int64).tobytes())
    for frame in (users, items):
        h.update(json.dumps([list(frame.columns), frame.astype(str).to_numpy().tolist()]).encode())
    return h.hexdigest()[:16]


def _read(path, sep, names, encoding="latin-1"):
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: missing (expected a raw MovieLens file)")
    rows = []
    with open(path, encoding=encoding, newline="") as f:
        for number, line in enumerate(f, 1):
            line = line.rstrip("\r\n")
            if not line:
                continue
            fields = line.split(sep)
            if len(fields) != len(names):
                raise RawFormatError(f"{path}, line {number}: {len(fields)} fields, expected {len(names)} "
                                     f"({sep.join(names)})")
            rows.append(fields + [number])
    return pd.DataFrame(rows, columns=list(names) + ["_line"])


def _ints(frame, path, columns):
    for column in columns:
        values = pd.to_numeric(frame[column], errors="coerce")
        bad = values.isna().to_numpy()
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise RawFormatError(f"{path}, line {frame['_line'].iat[i]}: {column} {frame[column].iat[i]!r} "
                                 f"is not an integer")
        frame[column] = values.astype(np.int64)
    return frame


def _title_year(titles):
    years = pd.to_numeric(titles.str.extract(_YEAR, expand=False), errors="coerce").fillna(0).astype(np.int64)
    return titles.str.replace(_YEAR, "", regex=True).str.strip(), years


def load(raw_dir):
    """-> (ratings, users, items) as described in the module docstring."""
    kind = detect(raw_dir)
    table = lambda name, sep, columns, ints: _ints(_read(os.path.join(raw_dir, name), sep, columns),  # noqa: E731
                                                   os.path.join(raw_dir, name), ints)
    rating_columns = ["user_id", "item_id", "rating", "timestamp"]
    if kind == "ml-100k":
        ratings = table("u.data", "\t", rating_columns, rating_columns)
        users = table("u.user", "|", ["user_id", "age", "gender", "occupation", "zip"], ["user_id", "age"])
        flags = [f"g{i}" for i in range(len(ML100K_GENRES))]
        items = table("u.item", "|", ["item_id", "title", "release", "video", "url"] + flags, ["item_id"] + flags)
        items["genres"] = [tuple(g for g, on in zip(ML100K_GENRES, row) if on) for row in items[flags].to_numpy()]
    else:
        ratings = table("ratings.dat", "::", rating_columns, rating_columns)
        users = table("users.dat", "::", ["user_id", "gender", "age", "occupation", "zip"], ["user_id", "age"])
        items = table("movies.dat", "::", ["item_id", "title", "genre_text"], ["item_id"])
        items["genres"] = [tuple(g for g in text.split("|") if g) for text in items["genre_text"]]
    items["title"], items["year"] = _title_year(items["title"])
    ratings = (ratings[rating_columns]
               .sort_values(["user_id", "timestamp", "item_id"], kind="stable").reset_index(drop=True))
    users = users[["user_id", "gender", "age", "occupation", "zip"]].reset_index(drop=True)
    items = items[["item_id", "title", "year", "genres"]].reset_index(drop=True)
    _check_keys(raw_dir, ratings, users, items)
    return ratings, users, items


def _check_keys(raw_dir, ratings, users, items):
    for name, frame, key in (("users", users, "user_id"), ("items", items, "item_id")):
        if frame[key].duplicated().any():
            raise RawFormatError(f"{raw_dir}: {name} file lists {key} {frame[key][frame[key].duplicated()].iat[0]} twice")
    unknown_users = ~ratings["user_id"].isin(users["user_id"])
    unknown_items = ~ratings["item_id"].isin(items["item_id"])
    if unknown_users.any() or unknown_items.any():
        row = ratings[unknown_users | unknown_items].iloc[0]
        raise RawFormatError(f"{raw_dir}: a rating names user {row.user_id} / item {row.item_id}, "
                             f"not in the users / items files")


def main(argv=None):
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python datasets/movielens/raw.py DIR (prints ml-100k or ml-1m)", file=sys.stderr)
        return 2
    try:
        print(detect(args[0]))
    except FileNotFoundError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
