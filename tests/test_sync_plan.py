"""The sync diff is pure: literal scans and catalogs in, a plan out."""

from __future__ import annotations

from embedops.sources.base import Document, Skipped, Unchanged
from embedops.sync.plan import CatalogDoc, plan_sync


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
