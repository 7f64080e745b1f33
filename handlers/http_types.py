"""Plain request and response values, so handlers run and are tested without Azure."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Request:
    method: str
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)  # keys lower case
    params: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Response:
    status: int
    payload: Any

    @property
    def body(self) -> bytes:
        return json.dumps(self.payload, default=str).encode()
