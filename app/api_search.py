"""Free-text search: GET /api/v1/search, answered by OpenSearch when configured, else PostgreSQL."""
from __future__ import annotations

import logging
from collections.abc import Callable

from flask import Blueprint, Flask, Response, jsonify, request

from app.api_common import parse_limit, parse_time, runtime
from app.runtime import Runtime
from services import opensearch, search
from services.errors import InvalidInput
from services.opensearch import IndexRun, OpenSearchConfig, OpenSearchIndex

log = logging.getLogger(__name__)
bp = Blueprint("search", __name__, url_prefix="/api/v1")
# With a status filter OpenSearch cannot answer alone (status lives in PostgreSQL): fetch more, then filter.
STATUS_OVERFETCH = 5


@bp.get("/search")
def search_steps() -> Response:
    """Ranked steps matching q, each with a snippet, a timeline link and where its payload lives."""
    rt = runtime()
    args = request.args
    q = " ".join(args.get("q", "").split())
    if not q:
        raise InvalidInput("q must contain the text to search for")
    filters = {"workflow_id": args.get("workflow_id") or None, "since": parse_time(args, "since"),
               "until": parse_time(args, "until")}
    status = args.get("status") or None
    search.check_statuses(status)
    limit = parse_limit(args, default=20, maximum=100)
    index = opensearch_index(rt)
    fallback = None
    if index is not None:
        try:
            hits = index.search(q, limit=min(500, limit * STATUS_OVERFETCH) if status else limit, **filters)
            with rt.database.reader() as conn:
                items = search.execution_context(conn, hits, status=status)[:limit]
            return jsonify(query=q, backend="opensearch", items=items)
        except opensearch.IndexUnavailable as exc:
            # PostgreSQL's own indexes always exist: an investigation should not stop with the cluster.
            log.warning("search falls back to PostgreSQL: %s", exc)
            fallback = str(exc)
    with rt.database.reader() as conn:
        page = search.search(conn, q=q, status=status, limit=limit, **filters)
    if fallback:
        page["fallback_reason"] = fallback
    return jsonify(page)


def opensearch_index(rt: Runtime) -> OpenSearchIndex | None:
    """The process's OpenSearch index when FLOWLEDGER_OPENSEARCH_URL is set (tests may place their own)."""
    if "opensearch" not in rt.extras:
        s = rt.settings
        rt.extras["opensearch"] = OpenSearchIndex(OpenSearchConfig(
            url=s.opensearch_url, index_prefix=s.opensearch_index_prefix, batch_size=s.opensearch_batch_size,
            verify_certs=s.opensearch_verify_certs, ca_certs=s.opensearch_ca_certs or None)) \
            if s.opensearch_url else None
    return rt.extras["opensearch"]


def index_pending(rt: Runtime) -> IndexRun | None:
    """One pass of the outbox indexer (the scheduler's job and `flowledger search index-pending`)."""
    index = opensearch_index(rt)
    if index is None:
        return None
    run = opensearch.index_pending(rt.database, index)
    if run.sent or run.error:
        log.info("search outbox: sent %d in %d batches, now at id %d%s", run.sent, run.batches, run.last_id,
                 f" ({run.error})" if run.error else "")
    return run


def index_pending_job(rt: Runtime) -> Callable[[], None]:
    """The interval job the scheduler registers."""
    def job() -> None:
        index_pending(rt)

    return job


def init_app(server: Flask, rt: Runtime) -> None:
    """Register the search endpoint; with OpenSearch configured, switch the step outbox on."""
    server.register_blueprint(bp)
    if rt.settings.opensearch_url:
        # Switching off is an explicit `flowledger search outbox off`: a process started without the
        # URL must not silently stop change capture for the others.
        with rt.database.writer() as conn:
            if opensearch.set_outbox(conn, enabled=True, reason="FLOWLEDGER_OPENSEARCH_URL is set"):
                log.info("search outbox switched on")
