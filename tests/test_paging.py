"""walk_pages: the keyset pages a bulk job reads, on both databases."""
from __future__ import annotations

from db import repo
from db.models import utcnow
from db.session import session_factory_for
from worker.jobs import walk_pages


def _collection_with_gaps(url: str, n: int = 60) -> list[int]:
    """``n`` documents of "c" whose ids are interleaved with runs of another collection's; their ids in order."""
    sessions = session_factory_for(url)
    for i in range(n):
        with sessions.begin() as s:
            repo.upsert_documents(s, "c", [{"external_id": f"c{i}", "text": f"text {i}"}])
            if i % 7 == 0:  # a run of foreign ids: the windows must step over them
                repo.upsert_documents(s, "other", [{"external_id": f"o{i}-{k}", "text": "x"} for k in range(9)])
    with sessions.begin() as s:
        return [doc_id for doc_id, _ in repo.read_documents(s, "c", None, 10 * n)]


def _walk(url: str, cursor=None, limit: int = 8, **kw) -> list[tuple[list[int], int]]:
    return [([doc_id for doc_id, _ in page], scanned_to)
            for page, scanned_to, _ in walk_pages(session_factory_for(url), "c", cursor, limit, **kw)]


def test_pages_cover_every_document_once_in_id_order_and_the_cursor_covers_each_page(any_db_url):
    ids = _collection_with_gaps(any_db_url)

    pages = _walk(any_db_url)

    seen = [doc_id for page, _ in pages for doc_id in page]
    assert seen == ids
    assert all(len(page) <= 8 for page, _ in pages)
    cursors = [scanned_to for _, scanned_to in pages]
    assert cursors == sorted(set(cursors)) and cursors[-1] == ids[-1]
    for page, scanned_to in pages:  # every id of a page is at or below the cursor stored with it
        assert all(doc_id <= scanned_to for doc_id in page)


def test_a_walk_resumed_from_a_stored_cursor_reads_exactly_the_documents_after_it(any_db_url):
    ids = _collection_with_gaps(any_db_url)
    first = _walk(any_db_url)
    cursor = first[2][1]

    resumed = [doc_id for page, _ in _walk(any_db_url, cursor=cursor) for doc_id in page]

    assert resumed == [doc_id for doc_id in ids if doc_id > cursor]
    assert resumed and resumed[0] == first[3][0][0]


def test_up_to_id_bounds_the_walk_like_a_shard_range(any_db_url):
    ids = _collection_with_gaps(any_db_url)
    low, high = ids[10], ids[40]

    pages = _walk(any_db_url, cursor=low - 1, up_to_id=high)

    assert [doc_id for page, _ in pages for doc_id in page] == ids[10:41]
    assert pages[-1][1] == high


def test_only_missing_skips_documents_with_a_fresh_prediction_and_reads_changed_ones_again(any_db_url):
    ids = _collection_with_gaps(any_db_url, n=30)
    sessions = session_factory_for(any_db_url)
    with sessions.begin() as s:
        mv = repo.register_model_version(s, name="m", base_model="tiny", status="ready", artifact_path="/nowhere",
                                         artifact_sha256="0" * 64, labels=["a", "b"], hyperparameters={},
                                         metrics={}, lineage={})
        repo.upsert_predictions(s, [{"document_id": doc_id, "model_version_id": mv.id, "label": "a", "score": 1.0,
                                     "scores": {"a": 1.0, "b": 0.0}, "error": None, "job_id": None,
                                     "created_at": utcnow()} for doc_id in ids[::2]])
    with sessions.begin() as s:  # a predicted document whose text changed since: its prediction is stale
        repo.upsert_documents(s, "c", [{"external_id": "c4", "text": "a new text"}])

    read = [doc_id for page, _ in _walk(any_db_url, limit=4, unpredicted_by=mv.id) for doc_id in page]

    assert read == sorted(set(ids[1::2]) | {ids[4]})
    assert [doc_id for page, _ in _walk(any_db_url, limit=4) for doc_id in page] == ids


def test_an_empty_or_unknown_collection_yields_no_pages(any_db_url):
    assert _walk(any_db_url) == []
    _collection_with_gaps(any_db_url, n=3)
    assert list(walk_pages(session_factory_for(any_db_url), "nothing-here", None, 8)) == []
