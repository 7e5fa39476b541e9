"""A Merkle tree over SHA-256 leaves (RFC 6962 domain separation) with inclusion proofs; pure functions."""
from __future__ import annotations

import hashlib
from datetime import UTC, datetime

LEAF, NODE = b"\x00", b"\x01"
EMPTY_ROOT = hashlib.sha256(b"").hexdigest()


def leaf_hash(data: bytes) -> bytes:
    """The hash of one leaf's canonical bytes."""
    return hashlib.sha256(LEAF + data).digest()


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(NODE + left + right).digest()


def root(leaves: list[bytes]) -> str:
    """The hex root over leaf hashes in order; an odd last node is carried up unchanged."""
    if not leaves:
        return EMPTY_ROOT
    level = list(leaves)
    while len(level) > 1:
        level = [_node(level[i], level[i + 1]) if i + 1 < len(level) else level[i] for i in range(0, len(level), 2)]
    return level[0].hex()


def proof(leaves: list[bytes], index: int) -> list[dict[str, str]]:
    """The sibling hashes from leaf index up to the root, each with the side it sits on."""
    path: list[dict[str, str]] = []
    level = list(leaves)
    while len(level) > 1:
        sibling = index ^ 1
        if sibling < len(level):
            path.append({"hash": level[sibling].hex(), "side": "left" if sibling < index else "right"})
        level = [_node(level[i], level[i + 1]) if i + 1 < len(level) else level[i] for i in range(0, len(level), 2)]
        index //= 2
    return path


def verify_proof(leaf: bytes, path: list[dict[str, str]], expected_root: str) -> bool:
    """True when folding path onto leaf yields expected_root."""
    node = leaf
    for step in path:
        sibling = bytes.fromhex(step["hash"])
        node = _node(sibling, node) if step["side"] == "left" else _node(node, sibling)
    return node.hex() == expected_root


def chain(prev_root: str | None, merkle_root: str, period_start: datetime, period_end: datetime) -> str:
    """A seal's root: its Merkle root bound to its period and to the previous seal's root."""
    start, end = period_start.astimezone(UTC).isoformat(), period_end.astimezone(UTC).isoformat()
    text = f"flowledger-seal-v1\n{prev_root or ''}\n{start}\n{end}\n{merkle_root}"
    return hashlib.sha256(text.encode()).hexdigest()
