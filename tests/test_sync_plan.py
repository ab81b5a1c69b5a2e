"""The sync diff is pure: literal scans and catalogs in, a plan out."""

from __future__ import annotations

import random
from typing import Any

import pytest

from embedops.sources.base import Document, OutOfOrder, Skipped, SourceItem, Unchanged
from embedops.sync.plan import CatalogDoc, CatalogStream, plan_sync, plan_sync_in_order


def doc(ext_id: str, text: str, signature: str | None = None, **meta: str) -> Document:
    return Document(ext_id, text, meta, None, signature)


def known(*docs: tuple[str, Document, int]) -> dict[str, CatalogDoc]:
    return {ext: CatalogDoc(row, d.content_hash, d.signature) for ext, d, row in docs}


def test_new_documents_are_added() -> None:
    plan = plan_sync("s", [doc("a", "alpha"), doc("b", "beta")], {})
    assert [d.external_id for d in plan.added] == ["a", "b"]
    assert not plan.updated and not plan.deleted and plan.unchanged == 0


def test_same_content_is_unchanged_and_changed_content_is_updated() -> None:
    a, b = doc("a", "alpha"), doc("b", "beta")
    plan = plan_sync("s", [a, doc("b", "beta v2")], known(("a", a, 1), ("b", b, 2)))
    assert plan.unchanged == 1
    assert [(row, d.text) for row, d in plan.updated] == [(2, "beta v2")]
    assert plan.is_noop is False


def test_metadata_change_is_an_update() -> None:
    a = doc("a", "alpha", lang="en")
    plan = plan_sync("s", [doc("a", "alpha", lang="de")], known(("a", a, 1)))
    assert len(plan.updated) == 1


def test_missing_documents_are_deleted() -> None:
    a, b = doc("a", "alpha"), doc("b", "beta")
    plan = plan_sync("s", [a], known(("a", a, 1), ("b", b, 2)))
    assert plan.deleted == [(2, "b")]


def test_skipped_record_keeps_its_previous_version() -> None:
    a = doc("a", "alpha")
    plan = plan_sync("s", [Skipped("a", "invalid UTF-8")], known(("a", a, 1)))
    assert plan.deleted == [] and plan.skipped == [Skipped("a", "invalid UTF-8")]


def test_unchanged_marker_counts_and_is_not_deleted() -> None:
    a = doc("a", "alpha", signature="1:5")
    plan = plan_sync("s", [Unchanged("a")], known(("a", a, 1)))
    assert plan.unchanged == 1 and plan.deleted == [] and plan.is_noop


def test_new_signature_with_same_content_is_recorded_not_reembedded() -> None:
    a = doc("a", "alpha", signature="1:5")
    plan = plan_sync("s", [doc("a", "alpha", signature="2:5")], known(("a", a, 7)))
    assert plan.unchanged == 1 and plan.resigned == [(7, "2:5")] and not plan.updated


def test_duplicate_ids_in_one_scan_are_skipped_after_the_first() -> None:
    plan = plan_sync("s", [doc("a", "one"), doc("a", "two")], {})
    assert [d.text for d in plan.added] == ["one"]
    assert plan.skipped[0].external_id == "a" and "duplicate" in plan.skipped[0].reason


def test_summary_matches_json_contract() -> None:
    plan = plan_sync("s", [doc("a", "x"), Skipped("bad.bin", "binary file")], {})
    summary = plan.summary()
    assert summary["added"] == 1 and summary["skipped"] == [{"id": "bad.bin", "reason": "binary file"}]


# --- the same diff as a merge join of two streams in id order ------------------------------------


def stream(*docs: tuple[str, Document, int]) -> CatalogStream:
    return CatalogStream(sorted((ext, row, d.content_hash, d.signature) for ext, d, row in docs))


def test_in_order_plan_equals_the_loaded_plan_for_every_kind_of_record() -> None:
    a, b, c, d, e = doc("a", "alpha", "s1"), doc("b", "beta"), doc("c", "gamma"), doc("d", "delta", "s4"), doc("e", "eps")
    catalog = [("a", a, 1), ("b", b, 2), ("c", c, 3), ("d", d, 4), ("e", e, 5)]
    scan: list[SourceItem] = [Unchanged("a"), doc("b", "beta v2"), Skipped("c", "invalid UTF-8"), doc("c2", "new"),
                              doc("d", "delta", "s5"), doc("d", "second d"), Unchanged("f")]
    plan = plan_sync_in_order("s", scan, stream(*catalog))
    assert plan == plan_sync("s", scan, known(*catalog))
    assert [x.external_id for x in plan.added] == ["c2"] and [r for r, _ in plan.updated] == [2]
    assert plan.deleted == [(5, "e")] and plan.resigned == [(4, "s5")] and plan.unchanged == 3
    assert [s.external_id for s in plan.skipped] == ["c", "d"] and "duplicate" in plan.skipped[1].reason


def test_in_order_plan_equals_the_loaded_plan_on_random_scans() -> None:
    rng = random.Random(7)
    for _ in range(300):
        ids = sorted({f"{rng.randint(0, 60)}" for _ in range(rng.randint(0, 30))})
        catalog = [(ext, doc(ext, f"text {ext}", f"sig {ext}"), row) for row, ext in enumerate(ids, 1) if rng.random() < 0.7]
        scan: list[SourceItem] = []
        for ext in sorted({f"{rng.randint(0, 60)}" for _ in range(rng.randint(0, 30))}):
            roll = rng.random()
            scan.append(Unchanged(ext) if roll < 0.3 else Skipped(ext, "bad") if roll < 0.4 else
                        doc(ext, f"text {ext}" if roll < 0.7 else f"new {ext}", f"sig2 {ext}"))
            if rng.random() < 0.1:  # a duplicate id comes next to the first
                scan.append(doc(ext, "again"))
        assert plan_sync_in_order("s", scan, stream(*catalog)) == plan_sync("s", scan, known(*catalog)), (catalog, scan)


def test_a_skipped_record_out_of_order_keeps_its_previous_version() -> None:
    a, b = doc("a", "alpha"), doc("b", "beta")
    # A row without id has no place in the order; nor may a Skipped record be trusted to keep it.
    scan = [Skipped("t:row without id #1", "no id"), Unchanged("c"), Skipped("b", "not UTF-8"), Skipped("a", "no text")]
    plan = plan_sync_in_order("s", scan, stream(("a", a, 1), ("b", b, 2), ("z", doc("z", "zed"), 3)))
    assert plan.deleted == [(3, "z")] and len(plan.skipped) == 3 and plan.unchanged == 1


def test_a_scan_out_of_order_is_refused_so_that_the_loaded_plan_runs() -> None:
    with pytest.raises(OutOfOrder, match="'10' after '9'"):
        plan_sync_in_order("s", [Unchanged("9"), Unchanged("10")], CatalogStream([]))
    with pytest.raises(OutOfOrder, match="the catalog gave 'a' after 'b'"):
        plan_sync_in_order("s", [Unchanged("c")], CatalogStream([("b", 1, "h", None), ("a", 2, "h", None)]))


def test_catalog_stream_reads_only_as_far_as_the_lookups_run_ahead_of_the_plan() -> None:
    read: list[int] = []

    def rows() -> Any:
        for i in range(10_000):
            read.append(i)
            yield f"{i:05d}", i, "h", f"s{i}"

    catalog = CatalogStream(rows())
    assert catalog.get("00100") == "s100" and catalog.get("00100x") is None and len(read) == 102
    deleted: list[tuple[int, str]] = []
    found = catalog.take("00050", deleted)
    assert found is not None and found.id == 50 and len(deleted) == 50 and len(read) == 102
    assert catalog.get("00200") == "s200" and len(read) == 201
    with pytest.raises(OutOfOrder):
        catalog.get("00150")  # lookups only go forward
    catalog.rest(deleted)
    assert len(deleted) == 9_999 and len(read) == 10_000
