"""First delivery wins: duplicates (same content) and conflicts (other content) across and inside chunks."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from customer_analytics.transforms.dedupe import (
    FirstDeliveries,
    content_hashes,
    id_hashes,
    origin,
    split_origin,
    string_hashes,
)
from customer_analytics.transforms.events import validate_events

FIRST, DUPLICATE, CONFLICT = 0, 1, 2


def u64(values) -> np.ndarray:
    return np.asarray(values, dtype=np.uint64)


def i64(values) -> np.ndarray:
    return np.asarray(values, dtype=np.int64)


def classify(seen: FirstDeliveries, ids, contents, origins):
    status, first = seen.classify(u64(ids), u64(contents), i64(origins))
    return status.tolist(), first.tolist()


class Reference:
    """The obvious implementation: a dict of id -> (content, origin) of its first delivery."""

    def __init__(self):
        self.first: dict[int, tuple[int, int]] = {}

    def classify(self, ids, contents, origins):
        status, first = [], []
        for i, c, o in zip(ids, contents, origins):
            i, c, o = int(i), int(c), int(o)
            if i in self.first:
                earlier_content, earlier_origin = self.first[i]
                status.append(DUPLICATE if earlier_content == c else CONFLICT)
                first.append(earlier_origin)
            else:
                self.first[i] = (c, o)
                status.append(FIRST)
                first.append(-1)
        return status, first


# -- hand-computed cases -----------------------------------------------------------------
def test_first_deliveries_are_new():
    seen = FirstDeliveries()
    assert classify(seen, [5, 3, 9], [50, 30, 90], [1, 2, 3]) == ([0, 0, 0], [-1, -1, -1])
    assert len(seen) == 3


def test_identical_redelivery_in_a_later_chunk_is_a_duplicate():
    seen = FirstDeliveries()
    classify(seen, [5, 3], [50, 30], [101, 102])
    assert classify(seen, [3, 7], [30, 70], [201, 202]) == ([DUPLICATE, FIRST], [102, -1])
    assert len(seen) == 3


def test_different_content_is_a_conflict_naming_the_first_origin():
    seen = FirstDeliveries()
    classify(seen, [5], [50], [101])
    assert classify(seen, [5], [51], [201]) == ([CONFLICT], [101])
    # the conflict did not replace the first delivery: the original content is still the reference
    assert classify(seen, [5, 5], [50, 51], [301, 302]) == ([DUPLICATE, CONFLICT], [101, 101])
    assert len(seen) == 1


def test_repeats_inside_one_chunk_refer_to_the_chunk_first():
    seen = FirstDeliveries()
    status, first = classify(seen, [8, 4, 8, 8, 4], [1, 2, 1, 9, 2], [11, 12, 13, 14, 15])
    assert status == [FIRST, FIRST, DUPLICATE, CONFLICT, DUPLICATE]
    assert first == [-1, -1, 11, 11, 12]
    assert len(seen) == 2


def test_repeats_inside_a_chunk_of_an_id_seen_before_refer_to_the_earlier_chunk():
    seen = FirstDeliveries()
    classify(seen, [8], [1], [11])
    assert classify(seen, [8, 8, 8], [9, 9, 1], [21, 22, 23]) == ([CONFLICT, CONFLICT, DUPLICATE], [11, 11, 11])


def test_empty_chunk():
    seen = FirstDeliveries()
    assert classify(seen, [], [], []) == ([], [])
    classify(seen, [1], [1], [1])
    assert classify(seen, [], [], []) == ([], [])
    assert len(seen) == 1


def test_extreme_hash_values():
    seen = FirstDeliveries()
    top = 2**64 - 1
    classify(seen, [top, 0], [1, 2], [1, 2])
    assert classify(seen, [0, top, top - 1], [2, 3, 4], [3, 4, 5]) == ([DUPLICATE, CONFLICT, FIRST], [2, 1, -1])


def test_many_chunks_against_the_reference():
    rng = np.random.default_rng(20240615)
    seen, reference = FirstDeliveries(), Reference()
    number = 0
    counts = np.zeros(3, dtype=int)
    for chunk in range(50):
        size = int(rng.integers(0, 300))
        ids = rng.integers(0, 2**63, size=size, dtype=np.uint64)
        contents = rng.integers(0, 2**63, size=size, dtype=np.uint64)
        # plant duplicates and conflicts of ids from earlier chunks and from this one
        if reference.first and size:
            known = np.array(list(reference.first), dtype=np.uint64)
            planted = rng.choice(size, size=min(size, 40), replace=False)
            ids[planted] = rng.choice(known, size=len(planted))
            same = planted[: len(planted) // 2]
            contents[same] = [reference.first[int(i)][0] for i in ids[same]]
        if size > 4:
            ids[-1], contents[-1] = ids[0], contents[0]
            ids[-2] = ids[1]
        origins = origin(chunk, np.arange(number + 1, number + size + 1))
        number += size
        expected = reference.classify(ids, contents, origins)
        status, first = seen.classify(ids, contents, origins)
        assert (status.tolist(), first.tolist()) == expected, f"chunk {chunk}"
        counts += np.bincount(status, minlength=3)
    assert len(seen) == len(reference.first)
    assert counts[FIRST] > 1000 and counts[DUPLICATE] > 100 and counts[CONFLICT] > 100  # all three were exercised


CHUNK = st.lists(st.tuples(st.integers(0, 30), st.integers(0, 2)), max_size=25)


@settings(max_examples=100, deadline=None)
@given(chunks=st.lists(CHUNK, min_size=1, max_size=50))
def test_classify_matches_the_reference(chunks):
    seen, reference = FirstDeliveries(), Reference()
    record = 0
    for file_index, rows in enumerate(chunks):
        ids = u64([i for i, _ in rows])
        contents = u64([c for _, c in rows])
        origins = origin(file_index, np.arange(record + 1, record + len(rows) + 1))
        record += len(rows)
        status, first = seen.classify(ids, contents, origins)
        assert (status.tolist(), first.tolist()) == reference.classify(ids, contents, origins)
    assert len(seen) == len(reference.first)


# -- hashes and origins ------------------------------------------------------------------
def test_origin_round_trip():
    packed = origin(7, np.array([1, 2, 4_000_000_000]))
    assert [split_origin(v) for v in packed] == [(7, 1), (7, 2), (7, 4_000_000_000)]
    assert origin(0, np.array([5]))[0] == 5


def _validated(*rows: dict) -> pd.DataFrame:
    base = {"event_id": "e1", "customer_id": "c1", "event_type": "purchase",
            "event_timestamp": "2023-06-15 14:30:45", "price": "10.5", "quantity": "2"}
    return validate_events(pd.DataFrame([{**base, **row} for row in rows]).astype(object))


def test_content_hash_ignores_how_the_values_were_written():
    out = _validated({}, {"price": 10.5, "quantity": 2, "event_timestamp": "2023-06-15T16:30:45+02:00",
                          "customer_id": " c1 "})
    hashes = content_hashes(out)
    assert hashes[0] == hashes[1]


@pytest.mark.parametrize("change", [{"customer_id": "c2"}, {"price": "10.51"}, {"quantity": "3"},
                                    {"event_timestamp": "2023-06-15 14:30:46"}, {"page_url": "https://x/"},
                                    {"event_type": "view"}])
def test_content_hash_sees_every_content_change(change):
    hashes = content_hashes(_validated({}, change))
    assert hashes[0] != hashes[1]


def test_content_hash_does_not_depend_on_the_event_id():
    hashes = content_hashes(_validated({}, {"event_id": "other"}))
    assert hashes[0] == hashes[1]


def test_real_hashes_through_first_deliveries():
    first = _validated({"event_id": "a"}, {"event_id": "b"})
    later = _validated({"event_id": "b"}, {"event_id": "a", "price": "99"}, {"event_id": "c"})
    seen = FirstDeliveries()
    seen.classify(id_hashes(first["event_id"]), content_hashes(first), origin(0, np.array([1, 2])))
    status, first_origin = seen.classify(id_hashes(later["event_id"]), content_hashes(later),
                                         origin(1, np.array([1, 2, 3])))
    assert status.tolist() == [DUPLICATE, CONFLICT, FIRST]
    assert [split_origin(v) for v in first_origin[:2]] == [(0, 2), (0, 1)]
    assert first_origin[2] == -1


def test_content_hash_is_not_fooled_by_separator_characters():
    shifted = content_hashes(_validated({"page_url": "a\x1fb", "product_id": "c"},
                                        {"page_url": "a", "product_id": "b\x1fc"}))
    null_vs_nul = content_hashes(_validated({"page_url": None}, {"page_url": "\x00"}))
    assert shifted[0] != shifted[1]
    assert null_vs_nul[0] != null_vs_nul[1]


# -- string hashes on Arrow buffers ------------------------------------------------------
EDGE_TEXTS = ["", "a", "a\x00", "\x00", "\x00" * 8, "abcdefg", "abcdefgh", "abcdefghi", "abcdefgh\x00",
              "bacdefgh", "x" * 64, "x" * 65, "é", "e\u0301", "C1", "C10", "1C"]


def test_string_hashes_tell_apart_texts_that_share_bytes_or_differ_by_trailing_zeros():
    hashes = string_hashes(pa.array(EDGE_TEXTS + [None]))
    assert len(set(hashes.tolist())) == len(EDGE_TEXTS) + 1  # null too is apart from "" and "\x00"


def test_string_hashes_depend_on_the_value_only():
    texts = EDGE_TEXTS * 3
    whole = string_hashes(pa.array(texts))
    sliced = string_hashes(pa.array(["padding", "more padding"] + texts).slice(2))
    large = string_hashes(pa.array(texts, type=pa.large_string()))
    binary = string_hashes(pa.array([t.encode() for t in texts], type=pa.binary()))
    chunked = string_hashes(pa.chunked_array([texts[:5], texts[5:]]))
    for other in (sliced, large, binary, chunked):
        assert other.tolist() == whole.tolist()
    assert whole[: len(EDGE_TEXTS)].tolist() == whole[len(EDGE_TEXTS): 2 * len(EDGE_TEXTS)].tolist()


def test_string_hashes_of_many_distinct_texts_do_not_collide():
    rng = np.random.default_rng(7)
    lengths = rng.integers(0, 40, 200_000)
    alphabet = np.frombuffer(b"abcXYZ019-_ ", dtype=np.uint8)
    texts = {bytes(alphabet[rng.integers(0, len(alphabet), n)]).decode() for n in lengths}
    texts |= {f"E202401-{i}" for i in range(100_000)}  # sequential ids, as exports number them
    hashes = string_hashes(pa.array(sorted(texts)))
    assert len(np.unique(hashes)) == len(texts)


def test_string_hashes_of_an_empty_array():
    assert string_hashes(pa.array([], pa.string())).tolist() == []
    assert string_hashes(pa.chunked_array([], pa.string())).tolist() == []


def test_content_hash_sees_a_missing_value_apart_from_zero():
    hashes = content_hashes(_validated({"event_type": "view", "price": None, "quantity": None},
                                       {"event_type": "view", "price": "0", "quantity": "0"}))
    assert hashes[0] != hashes[1]
