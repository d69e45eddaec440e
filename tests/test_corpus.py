from __future__ import annotations

import cv2
import numpy as np
import pytest
from training.corpus import (
    DHASH_THRESHOLD,
    RULES,
    Rule,
    dhash,
    group_duplicates,
    hamming,
    keep_largest,
    select_files,
    split_groups,
    summary_table,
)


def _picture(seed, h=240, w=320):
    """A smooth random picture (blurred noise), like a photo at low frequency."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


def test_dhash_is_resolution_invariant_and_discriminates():
    a = _picture(1, 480, 640)
    a_small = cv2.resize(a, (320, 240), interpolation=cv2.INTER_AREA)
    a_jpeg = cv2.imdecode(cv2.imencode(".jpg", a_small, [cv2.IMWRITE_JPEG_QUALITY, 70])[1], 1)
    b = _picture(2, 480, 640)
    ha, hs, hj, hb = dhash(a), dhash(a_small), dhash(a_jpeg), dhash(b)
    assert ha.shape == (256,) and ha.dtype == bool
    assert hamming(ha, hs) <= DHASH_THRESHOLD
    assert hamming(ha, hj) <= DHASH_THRESHOLD
    assert hamming(ha, hb) > 3 * DHASH_THRESHOLD
    # Gray and colour versions of the same picture hash alike.
    gray = cv2.cvtColor(a, cv2.COLOR_BGR2GRAY)
    assert hamming(dhash(gray), ha) <= DHASH_THRESHOLD


def test_group_duplicates_keeps_the_largest_copy():
    base = [_picture(s, 400, 600) for s in range(3)]
    images = [
        base[0],
        cv2.resize(base[1], (300, 200)),
        cv2.resize(base[0], (150, 100)),
        base[1],
        base[2],
    ]
    labels = group_duplicates([dhash(im) for im in images])
    assert labels[0] == labels[2] and labels[1] == labels[3]
    assert len({labels[0], labels[1], labels[4]}) == 3
    keep = keep_largest(labels, [im.shape[0] * im.shape[1] for im in images])
    assert keep == [0, 3, 4]


def test_group_duplicates_is_transitive_and_handles_empty():
    h = np.zeros(256, bool)
    h1 = h.copy()
    h1[:10] = True
    h2 = h1.copy()
    h2[10:20] = True  # 20 bits from h, 10 from h1
    assert group_duplicates([h, h1, h2], threshold=10) == [0, 0, 0]
    assert group_duplicates([]) == []


def test_split_is_deterministic_by_picture_and_stratified():
    strata = {
        "big/photo": [f"p{i}" for i in range(40)],
        "small/photo": [f"q{i}" for i in range(5)],
        "tiny/art": ["a", "b", "c"],
    }
    s1 = split_groups(strata, fraction=0.1, seed=0)
    reversed_input = {k: list(reversed(v)) for k, v in strata.items()}
    assert split_groups(reversed_input, fraction=0.1, seed=0) == s1  # order-independent
    assert sum(s1[g] == "val" for g in strata["big/photo"]) == 4
    assert sum(s1[g] == "val" for g in strata["small/photo"]) == 1  # >= 5 -> at least one
    assert all(s1[g] == "train" for g in strata["tiny/art"])
    s2 = split_groups(strata, fraction=0.1, seed=1)
    assert s2 != s1  # the seed matters
    # Repeated group names (tiles of one picture) get one split.
    dup = split_groups({"x": ["g", "g", "h", "i", "j", "k"]}, fraction=0.5)
    assert set(dup) == {"g", "h", "i", "j", "k"}


def test_select_files_rules(tmp_path):
    d = tmp_path / "usr/share/backgrounds"
    d.mkdir(parents=True)
    for name in ("a.jpg", "b.png", "c.svg", "skip.png", "readme.txt"):
        (d / name).write_bytes(b"x")
    (d / "link.jpg").symlink_to(d / "a.jpg")
    rule = Rule(("usr/share/backgrounds/*",), exclude=("*/skip.png",))
    assert select_files(tmp_path, rule) == [
        "usr/share/backgrounds/a.jpg",
        "usr/share/backgrounds/b.png",
    ]


def test_rules_group_variants_of_one_design():
    plasma = RULES["plasma-workspace-wallpapers"]
    rel = "usr/share/wallpapers/Path/contents/images/2560x1600.jpg"
    dark = "usr/share/wallpapers/Path/contents/images_dark/1920x1080.jpg"
    assert plasma.group(rel) == plasma.group(dark) == "Path"
    assert plasma.kind(rel) == "photo" and plasma.one_per_group
    gnome = RULES["gnome-backgrounds"]
    assert gnome.group("x/adwaita-l.webp") == gnome.group("x/adwaita-d.webp")
    st = RULES["stellarium-data"]
    tile = "usr/share/stellarium/landscapes/guereins/guereins4.png"
    assert st.group(tile) == "landscape-guereins" and st.kind(tile) == "photo"
    assert not st.one_per_group  # tiles are distinct parts: all kept, one split


@pytest.mark.parametrize("split", ["train", "val"])
def test_summary_table_counts(split):
    from training.corpus import Candidate

    c = Candidate("pkg", "1", "f.png", "photo", "g", 300, 300, "0", split=split)
    table = summary_table([c, c])
    assert "| pkg | photo |" in table
    assert ("| 2 | 0 |" if split == "train" else "| 0 | 2 |") in table
