"""API keys: `dbk_<prefix>_<secret>`, stored as a sha256 hash and looked up by prefix.

Keys are 32 random bytes, so a fast hash is enough (no password stretching):
guessing one is as hard as guessing the secret itself.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from .db import utcnow
from .tables import ApiKey, Owner

KEY_PREFIX = "dbk"
# Verified keys are remembered this long, so a polling client costs no database round trips
# for authentication; a revoked key stops working within this time.
CACHE_SECONDS = 10.0


@dataclass(frozen=True)
class Principal:
    """Who a request acts for: the owner behind its API key."""

    id: int
    name: str


class KeyCache:
    """Verified keys of one database (each app holds its own)."""

    def __init__(self, max_entries: int = 10_000):
        self._entries: dict[str, tuple[Principal, float]] = {}
        self._lock = threading.Lock()
        self._max = max_entries

    def get(self, digest: str) -> Principal | None:
        hit = self._entries.get(digest)
        if hit is None or hit[1] < time.monotonic():
            return None
        return hit[0]

    def put(self, digest: str, principal: Principal) -> None:
        with self._lock:
            if len(self._entries) >= self._max:
                self._entries.clear()
            self._entries[digest] = (principal, time.monotonic() + CACHE_SECONDS)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()




def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_key(session: Session, owner_name: str, key_name: str = "default") -> tuple[Owner, str]:
    """Create (or reuse) the owner called `owner_name` and a new key for it; the key is returned once."""
    owner_name = owner_name.strip()
    if not owner_name or len(owner_name) > 200:
        raise ValueError("owner name must be 1 to 200 characters")
    owner = session.scalar(select(Owner).where(Owner.name == owner_name))
    if owner is None:
        owner = Owner(name=owner_name)
        session.add(owner)
        session.flush()
    prefix = secrets.token_hex(6)
    key = f"{KEY_PREFIX}_{prefix}_{secrets.token_urlsafe(32)}"
    session.add(ApiKey(owner_id=owner.id, name=key_name, prefix=prefix, key_hash=_hash(key)))
    session.commit()
    return owner, key


def owner_for_key(session: Session, key: str, cache: KeyCache | None = None) -> Principal | None:
    parts = key.split("_", 2)
    if len(parts) != 3 or parts[0] != KEY_PREFIX:
        return None
    digest = _hash(key)
    cached = cache.get(digest) if cache is not None else None
    if cached is not None:
        return cached
    row = session.execute(select(ApiKey.key_hash, Owner.id, Owner.name).join(Owner, Owner.id == ApiKey.owner_id)
                          .where(ApiKey.prefix == parts[1], ApiKey.revoked_at.is_(None))).first()
    if row is None or not hmac.compare_digest(row.key_hash, digest):
        return None
    principal = Principal(row.id, row.name)
    if cache is not None:
        cache.put(digest, principal)
    return principal


def ensure_local_key(session: Session) -> str | None:
    """On the first start of an empty database: create the `local` owner and return its key."""
    if session.scalar(select(Owner.id).limit(1)) is not None:
        return None
    _, key = create_key(session, "local", "created on first start")
    return key


def revoke(session: Session, prefix: str) -> bool:
    row = session.scalar(select(ApiKey).where(ApiKey.prefix == prefix, ApiKey.revoked_at.is_(None)))
    if row is None:
        return False
    row.revoked_at = utcnow()
    session.commit()
    return True
