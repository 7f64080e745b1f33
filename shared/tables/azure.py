"""Azure Table Storage backend (``azure-data-tables``), the production store of shared.tables.

Follows the Table service REST semantics the SDK exposes: Insert Entity answers 409
``EntityAlreadyExists``; Update and Delete with ``If-Match: <etag>`` answer 412
``UpdateConditionNotSatisfied`` when the entity changed and 404 when it is gone; an
entity-group transaction (``$batch``) applies up to 100 operations on one partition all or
nothing; Query Entities returns at most 1,000 entities and a continuation
(``NextPartitionKey``/``NextRowKey``), which this backend hands out as one opaque string.

The SDK's ``delete_entity`` swallows 404, so a delete goes as a one-operation transaction,
which does not: a delete of an entity that is gone is a conflict, as the interface says.
Tables are created on first use: an operation that meets ``TableNotFound`` creates the table
and runs once more, so the steady state costs no extra round trip.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from shared.azure_limits import check_table_name, encode_entity, from_properties
from shared.tables import (
    MAX_PAGE,
    ConcurrencyConflict,
    Entity,
    EntityExists,
    Op,
    Page,
    RowRange,
    TableService,
    check_range,
    check_transaction,
    continuation_keys,
    continuation_token,
)

if TYPE_CHECKING:
    from azure.data.tables import TableClient, TableServiceClient

T = TypeVar("T")


def _error_code(exc: Any) -> str | None:
    """The service's error code: the SDK sets ``error_code`` on some paths only, so read the
    OData error body (``{"odata.error": {"code": ...}}``) when it is missing."""
    code = getattr(exc, "error_code", None)
    if code:
        return str(getattr(code, "value", code))  # a TableErrorCode, or the text
    try:
        return json.loads(exc.response.text())["odata.error"]["code"]
    except (AttributeError, ValueError, KeyError, TypeError):
        return None


def _if_match(etag: str) -> dict[str, Any]:
    """``If-Match: <etag>``, or ``If-Match: *`` (the SDK's Unconditionally takes no etag)."""
    from azure.core import MatchConditions

    if etag == "*":
        return {"match_condition": MatchConditions.Unconditionally}
    return {"etag": etag, "match_condition": MatchConditions.IfNotModified}


def _entity(raw: Any) -> Entity:
    props = {k: getattr(v, "value", v) for k, v in raw.items()}  # Int64 arrives as EntityProperty
    return Entity(raw["PartitionKey"], raw["RowKey"], from_properties(props), raw.metadata["etag"])


class AzureTableService(TableService):
    def __init__(self, service: TableServiceClient) -> None:
        self._service = service
        self._clients: dict[str, TableClient] = {}
        self._lock = threading.Lock()

    def _client(self, table: str) -> TableClient:
        with self._lock:
            client = self._clients.get(table)
            if client is None:
                client = self._clients[table] = self._service.get_table_client(check_table_name(table))
            return client

    def _run(self, table: str, call: Callable[[TableClient], T]) -> T:
        from azure.core.exceptions import HttpResponseError

        client = self._client(table)
        try:
            return call(client)
        except HttpResponseError as exc:  # a batch reports it as TableTransactionError, not 404
            if exc.status_code != 404 or _error_code(exc) != "TableNotFound":
                raise
        self._service.create_table_if_not_exists(table)
        return call(client)

    @staticmethod
    def _body(pk: str, rk: str, data: dict[str, Any]) -> dict[str, Any]:
        return {"PartitionKey": pk, "RowKey": rk, **encode_entity(pk, rk, data)}

    def insert(self, table: str, partition_key: str, row_key: str, data: dict[str, Any]) -> Entity:
        from azure.core.exceptions import ResourceExistsError

        body = self._body(partition_key, row_key, data)
        try:
            meta = self._run(table, lambda c: c.create_entity(body))
        except ResourceExistsError as exc:
            raise EntityExists(f"{table}/{partition_key}/{row_key}") from exc
        return Entity(partition_key, row_key, dict(data), meta["etag"])

    def get(self, table: str, partition_key: str, row_key: str) -> Entity | None:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            return _entity(self._run(table, lambda c: c.get_entity(partition_key, row_key)))
        except ResourceNotFoundError:
            return None

    def upsert(self, table: str, partition_key: str, row_key: str, data: dict[str, Any]) -> Entity:
        from azure.data.tables import UpdateMode

        body = self._body(partition_key, row_key, data)
        meta = self._run(table, lambda c: c.upsert_entity(body, mode=UpdateMode.REPLACE))
        return Entity(partition_key, row_key, dict(data), meta["etag"])

    def update(self, table: str, entity: Entity) -> Entity:
        from azure.core.exceptions import ResourceModifiedError, ResourceNotFoundError
        from azure.data.tables import UpdateMode

        body = self._body(entity.partition_key, entity.row_key, entity.data)
        try:
            meta = self._run(table, lambda c: c.update_entity(body, mode=UpdateMode.REPLACE,
                                                              **_if_match(entity.etag)))
        except (ResourceModifiedError, ResourceNotFoundError) as exc:
            raise ConcurrencyConflict(f"{table}/{entity.partition_key}/{entity.row_key}") from exc
        return Entity(entity.partition_key, entity.row_key, dict(entity.data), meta["etag"])

    def delete(self, table: str, entity: Entity) -> None:
        self.transact(table, entity.partition_key, [Op.delete(entity)])

    def transact(self, table: str, partition_key: str, ops: list[Op]) -> dict[str, Entity]:
        from azure.data.tables import TableTransactionError, UpdateMode

        check_transaction(ops)
        batch: list[Any] = []
        for op in ops:
            if op.kind == "delete":
                body: dict[str, Any] = {"PartitionKey": partition_key, "RowKey": op.row_key}
            else:
                body = self._body(partition_key, op.row_key, op.data)
            if op.kind == "insert":
                batch.append(("create", body))
            elif op.kind == "upsert":
                batch.append(("upsert", body, {"mode": UpdateMode.REPLACE}))
            else:
                options = _if_match(op.etag)
                batch.append(("update", body, {"mode": UpdateMode.REPLACE, **options}) if op.kind == "update"
                             else ("delete", body, options))
        try:
            results = self._run(table, lambda c: c.submit_transaction(batch))
        except TableTransactionError as exc:
            where = f"{table}/{partition_key}/{ops[min(exc.index, len(ops) - 1)].row_key}"
            if _error_code(exc) == "EntityAlreadyExists":
                raise EntityExists(where) from exc
            if exc.status_code in (404, 412):
                raise ConcurrencyConflict(where) from exc
            raise
        return {op.row_key: Entity(partition_key, op.row_key, dict(op.data), meta["etag"])
                for op, meta in zip(ops, results, strict=True) if op.kind != "delete"}

    def query_page(self, table: str, partition_key: str | None = None, *, limit: int = MAX_PAGE,
                   continuation: str | None = None, rows: RowRange | None = None) -> Page:
        check_range(partition_key, rows)
        limit = max(1, min(limit, MAX_PAGE))
        token = dict(zip(("PartitionKey", "RowKey"), continuation_keys(continuation), strict=True)) \
            if continuation else None

        def page(client: TableClient) -> tuple[list[Any], Any]:
            if partition_key is None:
                pages = client.list_entities(results_per_page=limit).by_page(continuation_token=token)
            else:
                where, params = "PartitionKey eq @pk", {"pk": partition_key}
                if rows is not None:  # served as a range of the (PartitionKey, RowKey) index
                    where += " and RowKey ge @start and RowKey lt @stop"
                    params.update(start=rows.start, stop=rows.stop)
                pages = client.query_entities(where, parameters=params,
                                              results_per_page=limit).by_page(continuation_token=token)
            return list(next(pages, [])), pages.continuation_token

        found, following = self._run(table, page)
        token_out = continuation_token(following["PartitionKey"], following["RowKey"]) if following else None
        return Page([_entity(r) for r in found], token_out)
