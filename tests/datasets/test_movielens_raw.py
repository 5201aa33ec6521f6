"""datasets/movielens/raw.py: both GroupLens layouts read into the same tables; bad files named."""
import os

import pytest

from datasets.movielens import raw


def write(folder, name, lines):
    with open(os.path.join(folder, name), "w", encoding="latin-1") as f:
        f.write("\n".join(lines) + "\n")


def ml1m(folder, ratings=None):
    write(folder, "ratings.dat", ratings or ["2::20::5::978300760", "1::10::3::978300761", "1::20::4::978300700"])
    write(folder, "users.dat", ["1::F::1::10::48067", "2::M::56::16::70072"])
    write(folder, "movies.dat", ["10::GoldenEye (1995)::Action|Adventure|Thriller", "20::Heat (1995)::Action"])
    return folder


def test_ml1m_tables(tmp_path):
    ratings, users, items = raw.load(ml1m(str(tmp_path)))
    assert raw.detect(str(tmp_path)) == "ml-1m"
    # sorted by user, then time
    assert ratings.values.tolist() == [[1, 20, 4, 978300700], [1, 10, 3, 978300761], [2, 20, 5, 978300760]]
    assert users.loc[1].tolist() == [2, "M", 56, "16", "70072"]
    assert items.loc[0, "title"] == "GoldenEye" and items.loc[0, "year"] == 1995
    assert items.loc[0, "genres"] == ("Action", "Adventure", "Thriller")


@pytest.mark.parametrize("bad, message", [
    ("1::10::3", "ratings.dat, line 2: 3 fields, expected 4"),
    ("1::ten::3::978300761", "ratings.dat, line 2: item_id 'ten' is not an integer"),
    ("3::10::3::978300761", "user 3 / item 10, not in the users / items files"),
])
def test_bad_ml1m_rating_named(tmp_path, bad, message):
    ml1m(str(tmp_path), ratings=["2::20::5::978300760", bad])
    with pytest.raises(raw.RawFormatError, match=message.replace("(", r"\(").replace(")", r"\)")):
        raw.load(str(tmp_path))


def test_unknown_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="neither u.data"):
        raw.load(str(tmp_path))


def test_ml100k_complete(shared_data):
    ratings, users, items = raw.load(os.path.join(shared_data, "ml-100k"))
    assert (len(ratings), len(users), len(items)) == (100000, 943, 1682)
    assert ratings.user_id.nunique() == 943 and ratings.item_id.nunique() == 1682
    toy = items.set_index("item_id").loc[1]
    assert (toy.title, toy.year, toy.genres) == ("Toy Story", 1995, ("Animation", "Children's", "Comedy"))
    assert (ratings.groupby("user_id").timestamp.diff().dropna() >= 0).all()
