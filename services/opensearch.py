"""OpenSearch 2.x for investigation queries: index template, ordered _bulk from the outbox, reindex, _search.

Step search documents reach `search_outbox` through a trigger in the step's own transaction
(migration 0005). `index_pending` sends them in id order and records progress in
`search_progress` only after OpenSearch accepted them; an OpenSearch that is down delays
indexing and loses nothing. Documents use the step id as `_id`, so a resend overwrites.
"""
from __future__ import annotations

import itertools
import json
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from opensearchpy import OpenSearch
from opensearchpy.exceptions import ConnectionError as TransportConnectionError
from opensearchpy.exceptions import TransportError
from sqlalchemy import Connection

from services import search as pg_search
from services.db import Database
from services.errors import FlowledgerError

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
CONSUMER = "opensearch"
TEXT_ANALYZER = {"type": "custom", "tokenizer": "uax_url_email", "filter": ["lowercase"]}
MAPPINGS = {
    "dynamic": False,
    "properties": {
        "step_id": {"type": "keyword"}, "execution_id": {"type": "keyword"},
        "workflow_id": {"type": "keyword"}, "step_name": {"type": "keyword"},
        "step_type": {"type": "keyword"}, "status": {"type": "keyword"},
        "seq": {"type": "integer"}, "attempt": {"type": "integer"},
        "created_at": {"type": "date"}, "started_at": {"type": "date"}, "completed_at": {"type": "date"},
        "duration_ms": {"type": "long"}, "response_status": {"type": "integer"},
        "external_request_id": {"type": "keyword"},
        "error_message": {"type": "text", "analyzer": "flowledger_text"},
        "search_text": {"type": "text", "analyzer": "flowledger_text"},
    },
}
HIT_FIELDS = ["step_id", "execution_id", "workflow_id", "step_name", "seq", "attempt", "status", "created_at"]


class IndexUnavailable(FlowledgerError):
    """OpenSearch did not accept a request after every retry; nothing was marked as indexed."""


@dataclass(frozen=True)
class OpenSearchConfig:
    """Where the cluster is and how hard to try."""

    url: str
    index_prefix: str = "flowledger"
    batch_size: int = 500
    replicas: int = 1
    verify_certs: bool = True
    ca_certs: str | None = None
    timeout: float = 30.0
    max_attempts: int = 8
    backoff_base: float = 0.5
    backoff_max: float = 30.0


@dataclass
class IndexRun:
    """What one pass over the outbox did."""

    sent: int = 0
    batches: int = 0
    rejected: int = 0
    last_id: int = 0
    busy: bool = False
    held_back: bool = False
    error: str | None = None


@dataclass
class OpenSearchIndex:
    """The steps index family: `<prefix>-steps-YYYY.MM` indices created from one index template."""

    config: OpenSearchConfig
    client: Any = None
    sleep: Callable[[float], None] = time.sleep
    _known: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        if self.client is None:
            url = self.config.url
            self.client = OpenSearch(
                hosts=[url], use_ssl=url.startswith("https://"), verify_certs=self.config.verify_certs,
                ca_certs=self.config.ca_certs or None, timeout=self.config.timeout, max_retries=0,
                retry_on_timeout=False)

    @property
    def template_name(self) -> str:
        return f"{self.config.index_prefix}-steps"

    @property
    def pattern(self) -> str:
        return f"{self.config.index_prefix}-steps-*"

    def index_for(self, created_at: str | datetime) -> str:
        """The monthly index a step document belongs to (UTC month of the step's created_at)."""
        moment = datetime.fromisoformat(created_at) if isinstance(created_at, str) else created_at
        return f"{self.config.index_prefix}-steps-{moment.astimezone(UTC):%Y.%m}"

    def ensure_template(self) -> None:
        """PUT _index_template/<prefix>-steps: mappings and settings for every monthly index."""
        if self.template_name in self._known:
            return
        body = {"index_patterns": [self.pattern], "priority": 100, "version": 1,
                "_meta": {"managed_by": "flowledger"},
                "template": {"settings": {"number_of_shards": 1, "number_of_replicas": self.config.replicas,
                                          "analysis": {"analyzer": {"flowledger_text": TEXT_ANALYZER}}},
                             "mappings": MAPPINGS,
                             "aliases": {f"{self.config.index_prefix}-steps": {}}}}
        self._call(lambda: self.client.indices.put_index_template(name=self.template_name, body=body))
        self._known.add(self.template_name)

    def ensure_index(self, name: str) -> None:
        """Create a monthly index unless it exists (clusters may forbid automatic index creation)."""
        if name in self._known:
            return
        if not self._call(lambda: self.client.indices.exists(index=name)):
            try:
                self._call(lambda: self.client.indices.create(index=name))
            except TransportError as exc:
                if "resource_already_exists" not in str(exc):
                    raise
        self._known.add(name)

    def bulk(self, docs: Sequence[dict[str, Any]]) -> int:
        """Index docs in order with one _bulk request (retrying failed items); returns items rejected for good."""
        pending = list(docs)
        for name in dict.fromkeys(self.index_for(d["created_at"]) for d in pending):
            self.ensure_index(name)
        rejected = 0
        for attempt in range(1, self.config.max_attempts + 1):
            body = "".join(json.dumps({"index": {"_index": self.index_for(d["created_at"]), "_id": d["step_id"]}})
                           + "\n" + json.dumps(d, ensure_ascii=False) + "\n" for d in pending)
            answer = self._call(lambda body=body: self.client.bulk(body=body))
            if not answer.get("errors"):
                return rejected
            retry = []
            for doc, item in zip(pending, answer.get("items", []), strict=False):
                status = next(iter(item.values())).get("status", 500)
                if status in RETRY_STATUSES:
                    retry.append(doc)
                elif status >= 300:
                    rejected += 1
                    log.error("OpenSearch rejected step %s for good: %s", doc["step_id"], item)
            if not retry:
                return rejected
            pending = retry
            self.sleep(self._backoff(attempt))
        raise IndexUnavailable(f"OpenSearch kept refusing {len(pending)} documents")

    def forget(self, execution_ids: Sequence[str]) -> int:
        """Delete every step document of these executions (erased or deleted in the ledger); returns the count."""
        body = {"query": {"terms": {"execution_id": list(execution_ids)}}}
        answer = self._call(lambda: self.client.delete_by_query(
            index=self.pattern, body=body, params={"conflicts": "proceed", "refresh": "true"}))
        if answer.get("failures"):
            raise IndexUnavailable(f"OpenSearch could not delete every document: {answer['failures'][:3]}")
        return int(answer.get("deleted", 0))

    def search(self, q: str, *, workflow_id: str | None = None, since: datetime | None = None,
               until: datetime | None = None, limit: int = 20, attempts: int = 2) -> list[dict[str, Any]]:
        """Matching steps via _search: exact phrase first, highlighted fragments, timeline links."""
        body = search_body(q, workflow_id=workflow_id, since=since, until=until, limit=limit)
        # A person is waiting: a couple of tries, not the indexer's long backoff.
        answer = self._call(lambda: self.client.search(index=self.pattern, body=body), attempts=attempts)
        hits = []
        for hit in answer.get("hits", {}).get("hits", []):
            src = hit.get("_source", {})
            fragments = [f for frags in hit.get("highlight", {}).values() for f in frags]
            hits.append({"step_id": src.get("step_id"), "execution_id": src.get("execution_id"),
                         "step_name": src.get("step_name"), "seq": src.get("seq"), "attempt": src.get("attempt"),
                         "step_status": src.get("status"), "created_at": src.get("created_at"),
                         "rank": hit.get("_score") or 0.0, "exact": "exact" in hit.get("matched_queries", []),
                         "snippet": " … ".join(fragments),
                         "link": pg_search.step_link(src.get("execution_id"), src.get("step_id"))})
        return hits

    def _call(self, request: Callable[[], Any], attempts: int | None = None) -> Any:
        """One request, retried with exponential backoff on connection errors, 429 and 5xx."""
        attempts = attempts or self.config.max_attempts
        for attempt in range(1, attempts + 1):
            try:
                return request()
            except TransportError as exc:
                retryable = isinstance(exc, TransportConnectionError) or exc.status_code in RETRY_STATUSES
                if not retryable:
                    raise
                if attempt == attempts:
                    raise IndexUnavailable(f"OpenSearch unavailable after {attempt} attempts: {exc}") from None
                log.warning("OpenSearch request failed (%s); retry %d", exc, attempt)
                self.sleep(self._backoff(attempt))
        raise AssertionError("unreachable")

    def _backoff(self, attempt: int) -> float:
        return min(self.config.backoff_max, self.config.backoff_base * 2 ** (attempt - 1))


def search_body(q: str, *, workflow_id: str | None = None, since: datetime | None = None,
                until: datetime | None = None, limit: int = 20) -> dict[str, Any]:
    """The _search request: all words must match; the literal phrase or request id boosts a step to the top."""
    filters: list[dict[str, Any]] = []
    if workflow_id:
        filters.append({"term": {"workflow_id": workflow_id}})
    if since or until:
        filters.append({"range": {"created_at": {k: v.isoformat() for k, v in (("gte", since), ("lt", until))
                                                 if v is not None}}})
    return {
        "size": limit, "track_total_hits": False, "_source": HIT_FIELDS,
        "query": {"bool": {
            "must": [{"multi_match": {"query": q, "fields": ["search_text", "error_message^2"],
                                      "operator": "and"}}],
            "should": [{"match_phrase": {"search_text": {"query": q, "boost": 10, "_name": "exact"}}},
                       {"term": {"external_request_id": {"value": q, "boost": 20, "_name": "exact"}}}],
            "filter": filters}},
        "highlight": {"encoder": "html", "pre_tags": ["<mark>"], "post_tags": ["</mark>"],
                      "fields": {"search_text": {"fragment_size": 160, "number_of_fragments": 2},
                                 "error_message": {"number_of_fragments": 1}}},
    }


def outbox_enabled(conn: Connection) -> bool:
    """Whether steps are currently written to the search outbox."""
    return bool(conn.execute(sa.text(
        "SELECT COALESCE((SELECT enabled FROM search_outbox_switch ORDER BY id DESC LIMIT 1), false)")).scalar())


def set_outbox(conn: Connection, *, enabled: bool, reason: str) -> bool:
    """Turn the step outbox on or off by appending a switch row; returns True when the state changed."""
    if outbox_enabled(conn) == enabled:
        return False
    conn.execute(sa.text("INSERT INTO search_outbox_switch (enabled, reason) VALUES (:e, :r)"),
                 {"e": enabled, "r": reason})
    return True


def index_pending(database: Database, index: OpenSearchIndex, *, consumer: str = CONSUMER,
                  settle_timeout: float = 5.0, clock: Callable[[], float] = time.monotonic) -> IndexRun:
    """Send every settled outbox row after the consumer's progress to _bulk, in id order, batch by batch."""
    run = IndexRun()
    with database.engine("writer").connect() as conn:
        if not conn.execute(sa.text("SELECT pg_try_advisory_lock(hashtext(:k))"), {"k": _lock_key(consumer)}).scalar():
            conn.commit()
            return IndexRun(busy=True)
        try:
            run.last_id = _progress(conn, consumer)
            horizon = _settled_horizon(conn, settle_timeout, index.sleep, clock)
            if horizon is None:
                run.held_back = True
                return run
            if horizon > run.last_id:
                index.ensure_template()
            while run.last_id < horizon:
                rows = conn.execute(sa.text(
                    "SELECT id, doc FROM search_outbox WHERE id > :last AND id <= :h ORDER BY id LIMIT :n"),
                    {"last": run.last_id, "h": horizon, "n": index.config.batch_size}).all()
                conn.commit()
                if not rows:
                    break
                run.rejected += _send(index, [r.doc for r in rows])
                _save_progress(conn, consumer, rows[-1].id)
                run.sent, run.batches, run.last_id = run.sent + len(rows), run.batches + 1, rows[-1].id
        except IndexUnavailable as exc:
            run.error = str(exc)
            log.warning("search outbox held at id %d: %s", run.last_id, exc)
        finally:
            conn.rollback()
            conn.execute(sa.text("SELECT pg_advisory_unlock(hashtext(:k))"), {"k": _lock_key(consumer)})
            conn.commit()
    if run.sent:
        prune_outbox(database, consumer=consumer)  # what OpenSearch confirmed needs no second copy here
    return run


def forget(conn: Connection, execution_ids: Sequence[UUID]) -> int:
    """Queue the removal of these executions' documents from the index (maintainer transaction; erasure and
    deletion). A no-op while the outbox is off; returns how many markers were queued."""
    if not execution_ids:
        return 0
    return conn.execute(sa.text("SELECT flowledger_search_forget(CAST(:ids AS uuid[]))"),
                        {"ids": [str(i) for i in execution_ids]}).scalar_one()


def prune_outbox(database: Database, *, consumer: str = CONSUMER, batch: int = 10_000) -> int:
    """Delete outbox rows the indexer has confirmed (up to its saved progress); returns how many."""
    removed = 0
    while True:
        with database.maintainer() as conn:
            done = conn.execute(sa.text(
                "DELETE FROM search_outbox WHERE id IN (SELECT id FROM search_outbox WHERE id <= "
                "(SELECT last_id FROM search_progress WHERE consumer = :c) ORDER BY id LIMIT :n)"),
                {"c": consumer, "n": batch}).rowcount
        removed += done
        if done < batch:
            return removed


def _send(index: OpenSearchIndex, docs: list[dict[str, Any]]) -> int:
    """Index docs in outbox order; each run of forget markers goes after what came before it. Returns rejections."""
    rejected = 0
    for forget_run, run in itertools.groupby(docs, key=lambda d: d.get("op") == "forget"):
        if forget_run:
            index.forget([d["execution_id"] for d in run])
        else:
            rejected += index.bulk(list(run))
    return rejected


def reindex(database: Database, index: OpenSearchIndex, *, since: datetime | None = None,
            progress: Callable[[int, int], None] | None = None) -> int:
    """Send every step (recorded since `since`) to _bulk again; progress(sent, total) after each batch."""
    index.ensure_template()
    sent = 0
    with database.reader() as conn:
        total = conn.execute(sa.text(
            "SELECT count(*) FROM steps WHERE CAST(:since AS timestamptz) IS NULL OR created_at >= :since"),
            {"since": since}).scalar_one()
        if progress:
            progress(0, total)
        for batch in _step_docs(conn, since, index.config.batch_size):
            index.bulk(batch)
            sent += len(batch)
            if progress:
                progress(sent, total)
    return sent


def _step_docs(conn: Connection, since: datetime | None, size: int) -> Iterator[list[dict[str, Any]]]:
    result = conn.execution_options(stream_results=True, yield_per=size).execute(sa.text(
        "SELECT flowledger_search_doc(to_jsonb(s), (SELECT workflow_id FROM executions e "
        "WHERE e.execution_id = s.execution_id LIMIT 1)) AS doc FROM steps s "
        "WHERE CAST(:since AS timestamptz) IS NULL OR s.created_at >= :since ORDER BY s.created_at, s.step_id"),
        {"since": since})
    for part in result.partitions(size):
        yield [r.doc for r in part]


def _settled_horizon(conn: Connection, timeout: float, sleep: Callable[[float], None],
                     clock: Callable[[], float]) -> int | None:
    """The highest outbox id below which no transaction can still commit a row, or None if not yet known.

    Ids are drawn before commit, so a committed id 10 can be visible while id 9 is still in flight.
    Every transaction that drew an id <= H (read first) had its xid before the snapshot taken
    next; once the oldest running xid passes that snapshot's xmax, all of them have ended.
    """
    seq = conn.execute(sa.text("SELECT last_value, is_called FROM search_outbox_id_seq")).one()
    horizon = seq.last_value if seq.is_called else 0
    xmax = conn.execute(sa.text("SELECT pg_snapshot_xmax(pg_current_snapshot())::text")).scalar_one()
    conn.commit()
    deadline = clock() + timeout
    delay = 0.01
    while True:
        settled = conn.execute(sa.text("SELECT pg_snapshot_xmin(pg_current_snapshot()) >= CAST(:x AS xid8)"),
                               {"x": xmax}).scalar_one()
        conn.commit()
        if settled:
            return horizon
        if clock() >= deadline:
            return None
        sleep(delay)
        delay = min(delay * 2, 0.5)


def _progress(conn: Connection, consumer: str) -> int:
    last = conn.execute(sa.text("SELECT last_id FROM search_progress WHERE consumer = :c"), {"c": consumer}).scalar()
    conn.commit()
    return int(last or 0)


def _save_progress(conn: Connection, consumer: str, last_id: int) -> None:
    conn.execute(sa.text(
        "INSERT INTO search_progress (consumer, last_id) VALUES (:c, :id) ON CONFLICT (consumer) "
        "DO UPDATE SET last_id = EXCLUDED.last_id, updated_at = now()"), {"c": consumer, "id": last_id})
    conn.commit()


def _lock_key(consumer: str) -> str:
    return f"flowledger-search-outbox:{consumer}"
