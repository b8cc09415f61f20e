"""``bertjobs ui``: a read-only web view and JSON API over the system of record.

Thin on purpose: every page is one data function (a session and the request's parameters in, one JSON
document out) built from the repository functions the CLI uses (db.repo, db.views) and the CLI's JSON shapes
(worker/present.py). The same document is the page's ``/api/...`` answer and its template's input.
"""
