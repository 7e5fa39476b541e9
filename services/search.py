"""Free-text search for investigations: PostgreSQL full-text plus trigram matching over step text.

`steps.search_text` is extracted from payloads after masking (services.text_extraction), so a
masked value never reaches the index. Exact identifiers rank first, then full-text rank, then
the newest step. Archived executions stay findable: their text stays on the steps row.
"""
from __future__ import annotations

import html
import re
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy import Connection

from services.browse import status_list
from services.errors import InvalidInput, require_one_of
from services.recording import EXECUTION_STATUSES

# The indexed expression (migration 0017): written exactly as the GIN index is, so the planner uses it.
# It is to_tsvector('simple', text) behind a function whose COST is what parsing really costs.
TSVECTOR = "flowledger_step_tsv(st.search_text)"
MARK_START, MARK_STOP = "\u27e6", "\u27e7"
HEADLINE_OPTIONS = f"StartSel={MARK_START}, StopSel={MARK_STOP}, MaxWords=30, MinWords=8, MaxFragments=2"
SNIPPET_CONTEXT = 80
MIN_TRIGRAM_CHARS = 3
# Digits or id punctuation, or a capital after a small letter (random tokens: pi_3MtwBwLkdIwHu7ix).
IDENTIFIER = re.compile(r"[0-9_@./:-]|[a-z][A-Z]")
MAX_QUERY_CHARS = 500

# Matches are cut to the newest CANDIDATES before ranking: ranking every step that mentions a common
# word (and reading its text for the exact check) cost seconds at 100,000 steps.
CANDIDATES = 300
# A word in a quarter of all steps (a common surname, "timeout") makes the GIN index return hundreds of
# thousands of rows, each re-parsed to confirm the match: a minute at 1,000,000 steps. GIN's own
# gin_fuzzy_search_limit caps what one index scan returns (a random subset past the cap), so such a
# query answers from a sample and says so; rare words, which investigations mostly look for, are exact.
FUZZY_LIMIT = 3000
# A search that still runs this long is stopped with a clear error instead of holding a connection.
TIMEOUT_MS = 15_000
# Whole-token matches come from the full-text index; the tsquery is written out, not taken from q, so it
# is an index condition (PostgreSQL folds these immutable calls on the bound q into one constant).
# Substring matches of identifiers come from the trigram index (see search()).
WEBSEARCH, PHRASE, PLAIN = (f"{fn}('simple', :fts)" for fn in ("websearch_to_tsquery", "phraseto_tsquery",
                                                               "plainto_tsquery"))
# An identifier is a phrase of lexemes (BO-00001234 is 'bo' <-> '-00001234'). GIN stores no positions, so a
# phrase makes every index hit a recheck that parses the step's ~3 KB of text again (0.3 ms a step, half of
# an identifier search at 100k executions). When q is exactly such a phrase, the index is asked for its
# lexemes in any order instead, which it answers without a recheck, and a hit is confirmed by finding q in
# the text as a whole token; only a hit without it is parsed. Other queries go to the index as written.
# regexp_like, not ~*: the planner costs the trigram index for a ~* inside an OR, 3-10 ms of planning.
RELAXED = f"({WEBSEARCH} = {PHRASE} AND {WEBSEARCH} <> {PLAIN})"
FTS_MATCH = ("steps st JOIN execution_state s ON s.execution_id = st.execution_id "
             f"WHERE {TSVECTOR} @@ (CASE WHEN {WEBSEARCH} = {PHRASE} THEN {PLAIN} ELSE {WEBSEARCH} END) "
             f"AND (NOT {RELAXED} OR regexp_like(st.search_text, :word, 'i') "
             f"OR to_tsvector('simple'::regconfig, st.search_text) @@ {WEBSEARCH})")
# Matched apart, then joined: as one WHERE with the join, the planner walked execution_state first and
# took seconds at 100k executions.
TRIGRAM_MATCH = ("(SELECT step_id, created_at FROM steps WHERE search_text ILIKE :like "
                 "AND (CAST(:since AS timestamptz) IS NULL OR created_at >= :since) "
                 "AND (CAST(:until AS timestamptz) IS NULL OR created_at < :until){bound}) m "
                 "JOIN steps st ON st.step_id = m.step_id AND st.created_at = m.created_at "
                 "JOIN execution_state s ON s.execution_id = st.execution_id WHERE true")
# A fragment found in most steps ("shop-mail", "INV-2026-00") made the trigram path re-check every step's text
# and sort them all by time: 15 s and a timeout at 100k executions. Without a workflow or status filter the
# match stops at the first CANDIDATES steps that hold it, in storage order, and the answer says it is a sample.
# With one, the filter is only known after the join, so every match is still read.
BOUND = " LIMIT :candidates"
# Ranking reads the text, never parses it, for a hit that holds q as a whole token (every hit of an
# identifier): such a hit is "exact" (when q's query is its phrase, being a hit already proves the phrase
# match; otherwise that is checked on a parse), and ts_rank_cd would give each occurrence 0.1 (a cover of
# the phrase with no noise, default weights), so counting them gives the same rank. Only other hits are
# parsed for ts_rank_cd, and ts_headline only runs for the page's hits that do not contain q literally.
SEARCH_SQL = """
WITH candidates AS (
  SELECT st.step_id, st.execution_id, st.step_name, st.seq, st.attempt, st.status AS step_status,
         st.created_at, st.search_text, s.workflow_id, s.status, s.archived_uri
  FROM {source}
    AND (CAST(:since AS timestamptz) IS NULL OR st.created_at >= :since)
    AND (CAST(:until AS timestamptz) IS NULL OR st.created_at < :until)
    AND (CAST(:workflow AS text) IS NULL OR s.workflow_id = :workflow)
    AND (CAST(:statuses AS text[]) IS NULL OR s.status = ANY(CAST(:statuses AS text[])))
  ORDER BY st.created_at DESC
  LIMIT :candidates
),
-- Materialized and behind OFFSET 0 so that each expression runs once a candidate, not once per use.
scored AS MATERIALIZED (
  SELECT c.*, n.occurrences,
         (n.occurrences > 0 AND ({websearch} = {phrase}
                                 OR to_tsvector('simple'::regconfig, c.search_text) @@ {phrase})) AS exact
  FROM candidates c CROSS JOIN LATERAL (
    SELECT regexp_count(c.search_text, :word, 1, 'i') AS occurrences OFFSET 0) n
),
hits AS (
  SELECT c.step_id, c.execution_id, c.step_name, c.seq, c.attempt, c.step_status, c.created_at, c.search_text,
         c.workflow_id, c.status, c.archived_uri, c.exact,
         CASE WHEN c.exact THEN CAST(0.1 * c.occurrences AS real)
              ELSE ts_rank_cd(to_tsvector('simple'::regconfig, c.search_text), {websearch}) END AS rank
  FROM scored c
  ORDER BY exact DESC, rank DESC, c.created_at DESC, c.step_id
  LIMIT :limit
)
-- The snippet of a hit that contains the query literally is cut in Python (_hit).
SELECT h.*, CASE WHEN strpos(lower(h.search_text), lower(:q)) > 0 THEN NULL
                 ELSE ts_headline('simple', h.search_text, {websearch}, :options) END AS headline,
       (SELECT count(*) FROM candidates) AS candidate_count
FROM hits h
ORDER BY h.exact DESC, h.rank DESC, h.created_at DESC, h.step_id
"""


def check_statuses(status: str | Sequence[str] | None) -> None:
    """Each execution status filter names a real status (OpenSearch and PostgreSQL searches alike)."""
    for one in status_list(status) or []:
        require_one_of("status", one, EXECUTION_STATUSES)


def search(conn: Connection, *, q: str, workflow_id: str | None = None, status: str | Sequence[str] | None = None,
           since: datetime | None = None, until: datetime | None = None, limit: int = 20) -> dict[str, Any]:
    """Steps whose extracted text matches q, ranked, each with a highlighted snippet and a timeline link.

    status is one execution status or several (the executions page's multi-select).
    """
    check_statuses(status)
    sql, params = _statement(q, workflow_id=workflow_id, status=status, since=since, until=until, limit=limit)
    identifier = _identifier(params["q"])
    _settings(conn, identifier=identifier)
    fragment = False
    try:
        rows = conn.execute(sa.text(sql), params).mappings().all()
        if not rows and identifier:
            fragment = True
            # No whole token matched: look for the identifier as a substring (a fragment of a longer id).
            # Only then, because an id's trigrams ("000", "-00", "mail") are in most steps and intersecting
            # them took 0.1-0.5 s at 1,000,000 steps against 5 ms for the token. Not sampled: a random
            # subset of trigram candidates would drop the very rows that contain the fragment.
            conn.exec_driver_sql("SET LOCAL gin_fuzzy_search_limit = 0")
            bound = BOUND if params["workflow"] is None and params["statuses"] is None else ""
            rows = conn.execute(sa.text(_sql(TRIGRAM_MATCH.format(bound=bound))), params).mappings().all()
    except sa.exc.OperationalError as exc:
        if "statement timeout" not in str(exc):
            raise
        raise InvalidInput(f"the search for {params['q']!r} took longer than {TIMEOUT_MS // 1000} s; narrow it "
                           "with a workflow, a status or a time range, or use a rarer word") from exc
    query = params["q"]
    sampled = bool(rows) and rows[0]["candidate_count"] >= CANDIDATES
    result = {"query": query, "backend": "postgresql", "items": [_hit(dict(r), query) for r in rows],
              "sampled": sampled}
    if sampled and fragment:
        result["note"] = (f"more than {CANDIDATES} steps contain this fragment; these are the best of the first "
                          f"{CANDIDATES} found, not necessarily the newest: add a time range or filters to narrow "
                          "the search, or search for the whole identifier")
    elif sampled:
        result["note"] = (f"more than {CANDIDATES} steps match; these are the best of the newest matches found "
                          "(very common words are answered from a sample): add filters to narrow the search")
    return result


def explain(conn: Connection, *, q: str, analyze: bool = False, **filters: Any) -> str:
    """The plan PostgreSQL chooses for a search (for tests and the benchmark)."""
    sql, params = _statement(q, **filters)
    _settings(conn, identifier=_identifier(params["q"]))
    verb = "EXPLAIN (ANALYZE, BUFFERS)" if analyze else "EXPLAIN"
    return "\n".join(r[0] for r in conn.execute(sa.text(f"{verb} {sql}"), params))


def _settings(conn: Connection, *, identifier: bool = False) -> None:
    """What every search runs with; local to the caller's transaction, set in one round trip."""
    settings = {"gin_fuzzy_search_limit": int(FUZZY_LIMIT), "statement_timeout": int(TIMEOUT_MS),
                # PostgreSQL prices ILIKE over a few KB of text as cheaply as over a word: on a small ledger
                # it read every step (90 ms at 3,000 steps, by a table scan or a whole-index scan) rather
                # than the trigram index. Steps are found through the text indexes only (bitmap scans);
                # reading every step's text is never the better plan for a search.
                "enable_seqscan": "off", "enable_indexscan": "off"}
    if identifier:
        # An identifier matches a handful of steps: starting parallel workers cost more (about 8 ms at
        # 100k executions) than the index scans they share. A common word keeps them (0.5 s against 1 s).
        settings["max_parallel_workers_per_gather"] = 0
    conn.exec_driver_sql("SELECT " + ", ".join(f"set_config('{name}', '{value}', true)"
                                               for name, value in settings.items()))


def execution_context(conn: Connection, hits: Iterable[dict[str, Any]], *,
                      status: str | Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Hits from an external index joined with each execution's current state, status filter applied."""
    hits = list(hits)
    ids = sorted({UUID(str(h["execution_id"])) for h in hits})
    if not ids:
        return []
    states = {r.execution_id: r for r in conn.execute(sa.text(
        "SELECT execution_id, workflow_id, status, archived_uri FROM execution_state "
        "WHERE execution_id = ANY(:ids)"), {"ids": ids})}
    wanted = status_list(status)
    out = []
    for hit in hits:
        state = states.get(UUID(str(hit["execution_id"])))
        if state is None or (wanted and state.status not in wanted):
            continue
        out.append({**hit, "workflow_id": state.workflow_id, "status": state.status,
                    **_archive(state.archived_uri)})
    return out


def step_link(execution_id: Any, step_id: Any) -> str:
    """Where a hit opens: the execution timeline with the step selected."""
    return f"/executions/{execution_id}?step={step_id}"


def _statement(q: str, *, workflow_id: str | None = None, status: str | Sequence[str] | None = None,
               since: datetime | None = None, until: datetime | None = None,
               limit: int = 20) -> tuple[str, dict[str, Any]]:
    query = " ".join((q or "").split())
    if not query:
        raise InvalidInput("q must contain the text to search for")
    if len(query) > MAX_QUERY_CHARS:
        raise InvalidInput(f"q must be at most {MAX_QUERY_CHARS} characters")
    sql = _sql(FTS_MATCH)
    params = {"q": query, "fts": _fts_text(query), "like": "%" + _like_escape(query) + "%", "word": _word_regex(query),
              "since": since, "until": until, "workflow": workflow_id, "statuses": status_list(status),
              "limit": limit,
              "options": HEADLINE_OPTIONS, "candidates": CANDIDATES}
    return sql, params


def _sql(source: str) -> str:
    return SEARCH_SQL.format(source=source, websearch=WEBSEARCH, phrase=PHRASE)


def _fts_text(query: str) -> str:
    """The text for the full-text query: a single token's leading '-' is part of a pasted fragment, not a NOT.

    In web-search syntax "-2026-00012345" means "steps without 2026-00012345": nearly every step, so the
    search returned steps that did not contain the query (and ran into the time limit on a big ledger)."""
    return query.lstrip("-") if query.startswith("-") and not any(ch.isspace() for ch in query) else query


def _identifier(query: str) -> bool:
    """Whether a query that no whole token matched is worth a substring search: trigrams need three
    characters to narrow anything, and are for fragments of identifiers that full-text cannot match as a
    token (2026-004 inside INV-2026-0042); plain words are answered by the full-text index alone."""
    return len(query) >= MIN_TRIGRAM_CHARS and IDENTIFIER.search(query) is not None


def _hit(row: dict[str, Any], query: str) -> dict[str, Any]:
    row.pop("candidate_count", None)
    text = row.pop("search_text") or ""
    headline = row.pop("headline") or ""
    row["rank"] = float(row["rank"] or 0)
    row["snippet"] = _snippet(text, query) if query.casefold() in text.casefold() else _marked(headline)
    row["link"] = step_link(row["execution_id"], row["step_id"])
    row.update(_archive(row.pop("archived_uri")))
    return row


def _archive(uri: str | None) -> dict[str, Any]:
    """Whether the payloads behind a hit are still hot or live in the archive now."""
    return {"archived": uri is not None, "archived_uri": uri, "payload_location": "archive" if uri else "hot"}


def _snippet(text: str, query: str) -> str:
    """An HTML-escaped window around the first literal occurrence of query, the match in <mark>."""
    at = text.casefold().find(query.casefold())
    start, stop = max(0, at - SNIPPET_CONTEXT), min(len(text), at + len(query) + SNIPPET_CONTEXT)
    return ("…" if start else "") + html.escape(text[start:at]) + "<mark>" + \
        html.escape(text[at:at + len(query)]) + "</mark>" + html.escape(text[at + len(query):stop]) + \
        ("…" if stop < len(text) else "")


def _marked(headline: str) -> str:
    """ts_headline output made safe for HTML: escape everything, then turn the sentinels into <mark>."""
    return html.escape(headline).replace(MARK_START, "<mark>").replace(MARK_STOP, "</mark>")


def _like_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _word_regex(value: str) -> str:
    """A case-insensitive PostgreSQL regex matching value as a whole token (not inside a longer id)."""
    escaped = re.sub(r"([^0-9A-Za-z\s])", r"\\\1", value)
    # '-', '.', '@' join the parts of ids and addresses: ORD-1 must not match inside ORD-1-2.
    # The end is a lookahead so that regexp_count also counts occurrences one separator apart.
    return f"(^|[^[:alnum:]_.@-]){escaped}(?=$|[^[:alnum:]_@-]|\\.([^[:alnum:]]|$))"
