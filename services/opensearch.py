"""OpenSearch for investigation queries: the adapter's public names, gathered from the modules that implement them."""
from __future__ import annotations

from services.opensearch_client import (
    HIT_FIELDS,
    MAPPINGS,
    RETRY_STATUSES,
    TEXT_ANALYZER,
    IndexUnavailable,
    OpenSearchConfig,
    OpenSearchIndex,
    search_body,
)
from services.opensearch_outbox import (
    CONSUMER,
    IndexRun,
    forget,
    index_pending,
    outbox_enabled,
    prune_outbox,
    set_outbox,
)
from services.opensearch_reindex import reindex

# Erasure, deletion, the search API and CLI call these as `opensearch.<name>`, as before the split.
__all__ = ["CONSUMER", "HIT_FIELDS", "MAPPINGS", "RETRY_STATUSES", "TEXT_ANALYZER", "IndexRun", "IndexUnavailable",
           "OpenSearchConfig", "OpenSearchIndex", "forget", "index_pending", "outbox_enabled", "prune_outbox",
           "reindex", "search_body", "set_outbox"]
