"""A record's seal: the content hash that a job writes into its own metrics file, so that a later edit
(by hand, or a damaged or mixed-up copy) shows. The table builder refuses a file whose seal does not
match its content; `python -m mokd verify` reports it.

The hash is the sha256 (16 hex digits) of the record as it reads back from its JSON, in a canonical
form (sorted keys, no spaces), without the seal itself (`provenance.content_sha256`).
"""

from __future__ import annotations

import copy
import hashlib
import json
from typing import Any

SEAL_KEY = "content_sha256"


def content_hash(record: dict[str, Any]) -> str:
    """The hash of `record` as its JSON reads back, its seal left out."""
    plain = json.loads(json.dumps(record, default=str))  # tuples become lists, paths strings, as on disk
    provenance = plain.get("provenance")
    if isinstance(provenance, dict):
        provenance.pop(SEAL_KEY, None)
    canonical = json.dumps(plain, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]


def sealed(record: dict[str, Any]) -> dict[str, Any]:
    """A copy of `record` (which has a `provenance` mapping) with its seal."""
    out = copy.deepcopy(record)
    out["provenance"][SEAL_KEY] = content_hash(out)
    return out


def seal_matches(record: Any) -> bool | None:
    """Whether a record's content still matches its seal; None when it has none (written before seals)."""
    provenance = record.get("provenance") if isinstance(record, dict) else None
    if not isinstance(provenance, dict) or SEAL_KEY not in provenance:
        return None
    return provenance[SEAL_KEY] == content_hash(record)
