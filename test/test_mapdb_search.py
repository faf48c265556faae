"""Prior map search: exact top-k, exclusion windows, radius filter, index kinds."""
from __future__ import annotations

import numpy as np
import pytest

from distilvpr_core.foundation.errors import UserError
from distilvpr_core.mapdb import PriorMap
from distilvpr_core.mapdb.topk import topk

D = 32
FP = "f" * 64
CONTRACT = {"input_size": [64, 48], "mean": [0.485, 0.456, 0.406]}


def unit(rng: np.random.Generator, n: int, d: int = D) -> np.ndarray:
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def make_map(n: int, index: str = "flat", params=None, seed: int = 0) -> tuple[PriorMap, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = unit(rng, n)
    m = PriorMap.create(D, FP, CONTRACT, index=index, index_params=params)
    poses = np.zeros((n, 7))
    poses[:, 0] = np.arange(n, dtype=np.float64)  # keyframe i at x = i metres
    poses[:, 6] = 1.0
    m.add(x, np.arange(n, dtype=np.int64) * 1_000_000_000, poses, "trav_a", np.arange(n) * 3)
    return m, x


def brute(x: np.ndarray, q: np.ndarray, k: int, allowed: np.ndarray | None = None):
    s = q @ x.T
    if allowed is not None:
        s[:, ~allowed] = -np.inf
    order = np.argsort(-s, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(s, order, axis=1)


def test_topk_matches_full_sort_including_exclusions():
    rng = np.random.default_rng(1)
    for n, k in ((10, 3), (1000, 1), (50_000, 10), (50_000, 200)):
        s = rng.standard_normal(n).astype(np.float32)
        s[rng.random(n) < 0.3] = -np.inf
        rows, vals = topk(s.copy(), k)
        ref = np.argsort(-s, kind="stable")[:k]
        ref = ref[np.isfinite(s[ref])]
        np.testing.assert_array_equal(rows, ref)
        np.testing.assert_array_equal(vals, s[ref])
    # sorted input is the worst case for the sampled threshold; still exact
    s = np.sort(rng.standard_normal(100_000).astype(np.float32))
    np.testing.assert_array_equal(topk(s, 5)[0], np.arange(99_999, 99_994, -1))


def test_flat_topk_equals_brute_force_single_and_batch():
    m, x = make_map(3000)
    rng = np.random.default_rng(2)
    q = unit(rng, 40)
    ref_ids, ref_scores = brute(x, q, 7)
    res = m.search(q, 7)
    assert res.ids.dtype == np.int64 and res.scores.dtype == np.float32 and res.ids.shape == (40, 7)
    np.testing.assert_array_equal(res.ids, ref_ids)
    np.testing.assert_allclose(res.scores, ref_scores, atol=1e-5)
    one = m.search(q[3], 7)  # [D] query -> [1, k]
    np.testing.assert_array_equal(one.ids, ref_ids[3:4])


def test_queries_and_rows_are_l2_normalised():
    m, x = make_map(100)
    res = m.search(5.0 * x[10], 1)
    assert res.ids[0, 0] == 10
    assert res.scores[0, 0] == pytest.approx(1.0, abs=1e-5)


def test_k_larger_than_map_is_padded():
    m, x = make_map(4)
    res = m.search(x[0], 6)
    assert sorted(res.ids[0, :4].tolist()) == [0, 1, 2, 3]
    assert res.ids[0, 4:].tolist() == [-1, -1] and np.all(np.isneginf(res.scores[0, 4:]))
    empty = PriorMap.create(D, FP, CONTRACT)
    assert empty.search(x[0], 2).ids.tolist() == [[-1, -1]]


def test_time_window_excludes_recent_keyframes():
    m, x = make_map(200)
    # query is keyframe 150 seen again at t=150 s: with a 30 s window only stamps <= 120 s remain
    res = m.search(x[150], 5, query_stamp_ns=150_000_000_000, exclude_within_s=30.0)
    assert res.ids.max() <= 120
    allowed = np.arange(200) <= 120
    np.testing.assert_array_equal(res.ids, brute(x, x[150:151], 5, allowed)[0])
    # without the window the query finds itself
    assert m.search(x[150], 1).ids[0, 0] == 150
    # per-query stamps
    res = m.search(x[[150, 60]], 3, query_stamp_ns=np.array([150, 60]) * 1_000_000_000,
                   exclude_within_s=10.0)
    assert res.ids[0].max() <= 140 and res.ids[1].max() <= 50


def test_last_n_window_excludes_most_recent_ids():
    m, x = make_map(100)
    res = m.search(x[99], 10, exclude_last_n=20)
    assert res.ids.max() < 80
    np.testing.assert_array_equal(res.ids, brute(x, x[99:100], 10, np.arange(100) < 80)[0])
    assert m.search(x[0], 3, exclude_last_n=100).ids.tolist() == [[-1, -1, -1]]


def test_radius_filter_keeps_only_nearby_keyframes():
    m, x = make_map(300)
    res = m.search(x[10], 300, center_xyz=[200.0, 0.0, 0.0], radius_m=5.0)
    got = res.ids[0][res.ids[0] >= 0]
    assert sorted(got.tolist()) == list(range(195, 206))
    with pytest.raises(UserError, match="together"):
        m.search(x[10], 3, radius_m=5.0)


@pytest.mark.parametrize("kind,params", [("hnsw", {"M": 16, "ef_search": 128}),
                                         ("ivfpq", {"nlist": 16, "m": 8, "nbits": 6, "nprobe": 16, "rerank": 8})])
def test_approximate_indices_agree_with_exact(kind, params):
    m, x = make_map(3000, kind, params)
    rng = np.random.default_rng(3)
    q = x[rng.choice(3000, 50, replace=False)] + 0.05 * unit(rng, 50)
    ref_ids, _ = brute(x, q / np.linalg.norm(q, axis=1, keepdims=True), 5)
    res = m.search(q, 5)
    assert np.mean(res.ids[:, 0] == ref_ids[:, 0]) >= 0.95
    # scores are exact inner products of the returned rows, best first
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    np.testing.assert_allclose(res.scores, np.einsum("qd,qkd->qk", qn, x[res.ids]), atol=1e-4)
    # filtered: a selective filter is answered exactly
    res = m.search(q[:3], 4, center_xyz=[100.0, 0, 0], radius_m=10.0)
    for i in range(3):
        np.testing.assert_array_equal(res.ids[i], brute(x, qn[i:i + 1], 4, np.abs(np.arange(3000) - 100) <= 10)[0][0])


def test_bad_inputs_raise_user_errors_naming_the_problem():
    m, x = make_map(10)
    with pytest.raises(UserError, match=r"\[N, 32\]"):
        m.search(np.zeros((2, 16), np.float32), 1)
    with pytest.raises(UserError, match="NaN"):
        m.search(np.full(D, np.nan, np.float32), 1)
    with pytest.raises(UserError, match="query_stamp_ns"):
        m.search(x[0], 1, exclude_within_s=2.0)
    with pytest.raises(UserError, match="k must be"):
        m.search(x[0], 0)
    with pytest.raises(UserError, match="poses"):
        m.add(x[:2], np.arange(2), np.zeros((2, 6)), "s", np.arange(2))
    with pytest.raises(UserError, match="unknown index type 'annoy'"):
        PriorMap.create(D, FP, CONTRACT, index="annoy")
    with pytest.raises(UserError, match="ef_serch"):
        PriorMap.create(D, FP, CONTRACT, index="hnsw", index_params={"ef_serch": 3})
    ivf = PriorMap.create(D, FP, CONTRACT, index="ivfpq", index_params={"nlist": 64, "m": 8})
    with pytest.raises(UserError, match=">= 256"):
        ivf.add(x, np.arange(10), np.tile([0, 0, 0, 0, 0, 0, 1.0], (10, 1)), "s", np.arange(10))
    assert len(ivf) == 0 and ivf.source_names == []


def test_hnsw_with_a_wide_filter_uses_the_faiss_selector():
    # > 20 000 allowed rows: the filter goes to FAISS (IDSelectorBitmap), not the exact subset path
    m, x = make_map(22_000, "hnsw", {"M": 8, "ef_construction": 40, "ef_search": 256})
    q = x[-50:]  # queries are the most recent keyframes, which the filter removes
    res = m.search(q, 3, exclude_last_n=1000)
    assert res.ids.max() < 21_000 and np.all(res.ids >= 0)
    ref, _ = brute(x, q, 1, np.arange(22_000) < 21_000)
    assert np.mean(res.ids[:, 0] == ref[:, 0]) >= 0.9


def test_search_params_can_be_tuned_and_are_checked():
    m, x = make_map(500, "hnsw", {"M": 8})
    m.set_search_params(ef_search=16)
    assert m.index_params["ef_search"] == 16 and m.search(x[7], 1).ids[0, 0] == 7
    with pytest.raises(UserError, match="'nprobe' is not a search parameter of index 'hnsw'"):
        m.set_search_params(nprobe=3)
    with pytest.raises(UserError, match="ef_search.*>= 1"):
        m.set_search_params(ef_search=0)


def test_inner_products_kernel_matches_numpy_single_and_threaded(tmp_path):
    from distilvpr_core.mapdb.exact import inner_products
    rng = np.random.default_rng(4)
    x = rng.standard_normal((300_001, 16), dtype=np.float32)  # above the threading threshold
    q = rng.standard_normal(16, dtype=np.float32)
    np.testing.assert_allclose(inner_products(x, q), x @ q, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(inner_products(x[:999], q), x[:999] @ q, rtol=1e-5, atol=1e-5)
    assert inner_products(x[:0], q).shape == (0,)
    np.save(tmp_path / "v.npy", x)  # loaded maps are read-only file mappings
    mapped = np.load(tmp_path / "v.npy", mmap_mode="r")
    np.testing.assert_allclose(inner_products(mapped, q), x @ q, rtol=1e-5, atol=1e-5)
