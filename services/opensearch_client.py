"""OpenSearch 2.x client for the steps index family: index template and mappings, _bulk, forget, _search, retries."""
from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from opensearchpy import OpenSearch
from opensearchpy.exceptions import ConnectionError as TransportConnectionError
from opensearchpy.exceptions import TransportError

from services import search as pg_search
from services.errors import FlowledgerError

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
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
