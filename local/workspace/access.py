"""Who the caller is and what it may do, in the local workspace: the routes a preflight
(``reactor doctor``) reads, answered in the shapes of databricks-sdk's types.

- ``GET /api/2.0/preview/scim/v2/Me`` (``w.current_user.me``, ``iam.User``): the workspace's one
  user, a member of the ``users`` group.
- ``GET /api/2.0/sql/warehouses/{id}`` (``w.warehouses.get``, ``sql.GetWarehouseResponse``): the
  warehouses in ``warehouses`` (the statement service runs any id; this is what exists), always
  ``RUNNING``; another id is ``404 RESOURCE_DOES_NOT_EXIST``.
- ``GET /api/2.0/permissions/{serving-endpoints|jobs|warehouses}/{id}`` (``w.serving_endpoints.
  get_permissions``, ``w.jobs.get_permissions``, ``w.warehouses.get_permissions``; Databricks REST
  API "Permissions", https://docs.databricks.com/api/workspace/permissions): the object must exist
  (a serving endpoint by its **id**, not its name); the user holds the level its creator gets
  (``CAN_MANAGE`` on an endpoint, ``IS_OWNER`` on a job and a warehouse), or ``CAN_VIEW`` once
  ``revoke_level`` took it away. The ``object_type`` strings are as recalled [INF].
- ``GET /api/2.1/unity-catalog/effective-permissions/{securable_type}/{full_name}``
  (``w.grants.get_effective``, ``catalog.EffectivePermissionsList``): the user's privileges on the
  securable, granted on it directly (no ``inherited_from_*``), less what ``revoke_privilege`` took
  away; ``?principal=`` someone else gets an empty list. A table must exist (404
  ``TABLE_DOES_NOT_EXIST`` otherwise, as ``tables.get``).

Not imported by the app; only by local tooling and tests.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable

from .catalog import UnityCatalog
from .errors import does_not_exist, invalid_parameter
from .web import Request, Response, Router

# What each securable type grants its owner here: the privileges a rollout, a feature publish and
# an analysis use (Databricks, "Unity Catalog privileges and securable objects",
# https://docs.databricks.com/aws/en/data-governance/unity-catalog/manage-privileges/privileges).
OWNER_PRIVILEGES = {
    "catalog": ("USE_CATALOG", "USE_SCHEMA", "CREATE_TABLE", "SELECT", "MODIFY"),
    "schema": ("USE_SCHEMA", "CREATE_TABLE", "SELECT", "MODIFY"),
    "table": ("SELECT", "MODIFY"),
    "function": ("EXECUTE", "APPLY_TAG", "MANAGE"),
}
# request_object_type -> (object_type in the answer [INF], the creator's level)
OBJECT_TYPES = {
    "serving-endpoints": ("serving-endpoint", "CAN_MANAGE"),
    "jobs": ("job", "IS_OWNER"),
    "warehouses": ("warehouses", "IS_OWNER"),
}
LOCAL_WAREHOUSE = "local-warehouse"


class AccessService:
    """The current user, the SQL warehouses and the permissions on objects and securables.

    ``exists(request_object_type, object_id)`` says whether a serving endpoint (by id) or a job
    exists; warehouses are this service's own."""

    def __init__(self, *, user: str, catalog: UnityCatalog, exists: Callable[[str, str], bool],
                 warehouses: Iterable[str] = (LOCAL_WAREHOUSE,)):
        self.user = user
        self.catalog = catalog
        self._exists = exists
        self.warehouses = set(warehouses)
        self._lock = threading.Lock()
        self._revoked_levels: set[tuple[str, str]] = set()
        self._revoked_privileges: set[tuple[str, str, str]] = set()

    def register(self, router: Router) -> None:
        router.add("GET", "/api/2.0/preview/scim/v2/Me", self.me)
        router.add("GET", "/api/2.0/sql/warehouses/{warehouse_id}", self.get_warehouse)
        router.add("GET", "/api/2.0/permissions/{object_type}/{object_id}", self.get_permissions)
        router.add("GET", "/api/2.1/unity-catalog/effective-permissions/{securable_type}/{full_name}",
                   self.get_effective)

    # ------------------------------------------------------------------ local tooling
    def revoke_level(self, object_type: str, object_id: str) -> None:
        """The user keeps only ``CAN_VIEW`` on the object (``object_type`` as in the route)."""
        with self._lock:
            self._revoked_levels.add((object_type, str(object_id)))

    def revoke_privilege(self, securable_type: str, full_name: str, privilege: str) -> None:
        with self._lock:
            self._revoked_privileges.add((securable_type.lower(), full_name.lower(), privilege))

    def restore(self) -> None:
        """Every revoked level and privilege back."""
        with self._lock:
            self._revoked_levels.clear()
            self._revoked_privileges.clear()

    # ------------------------------------------------------------------ REST
    def me(self, req: Request) -> Response:
        return Response(body={
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "id": "1", "userName": self.user,
            "displayName": self.user, "active": True, "emails": [{"value": self.user, "type": "work", "primary": True}],
            "groups": [{"display": "users", "value": "2", "$ref": "Groups/2"}]})

    def get_warehouse(self, req: Request, warehouse_id: str) -> Response:
        if warehouse_id not in self.warehouses:
            raise does_not_exist(f"Warehouse {warehouse_id} does not exist.")
        return Response(body={
            "id": warehouse_id, "name": warehouse_id, "state": "RUNNING", "cluster_size": "2X-Small",
            "min_num_clusters": 1, "max_num_clusters": 1, "num_clusters": 1, "num_active_sessions": 0,
            "auto_stop_mins": 10, "enable_serverless_compute": True, "warehouse_type": "PRO",
            "creator_name": self.user, "jdbc_url": "", "odbc_params": {"hostname": "127.0.0.1", "port": 443,
                                                                       "protocol": "https", "path": ""}})

    def get_permissions(self, req: Request, object_type: str, object_id: str) -> Response:
        if object_type not in OBJECT_TYPES:
            raise invalid_parameter(f"{object_type} is not a supported object type.")
        found = object_id in self.warehouses if object_type == "warehouses" else self._exists(object_type, object_id)
        if not found:
            raise does_not_exist(f"{object_type[:-1].replace('-', ' ').capitalize()} {object_id} does not exist.")
        answer_type, level = OBJECT_TYPES[object_type]
        with self._lock:
            if (object_type, object_id) in self._revoked_levels:
                level = "CAN_VIEW"
        return Response(body={
            "object_id": f"/{object_type}/{object_id}", "object_type": answer_type,
            "access_control_list": [{"user_name": self.user, "display_name": self.user,
                                     "all_permissions": [{"permission_level": level, "inherited": False}]}]})

    def get_effective(self, req: Request, securable_type: str, full_name: str) -> Response:
        kind = securable_type.lower()
        if kind not in OWNER_PRIVILEGES:
            raise invalid_parameter(f"Invalid securable type {securable_type}.")
        name = self.catalog.require(full_name) if kind == "table" else full_name.lower()
        principal = (req.query.get("principal") or [None])[0]
        if principal not in (None, self.user):
            return Response(body={"privilege_assignments": []})
        with self._lock:
            held = [p for p in OWNER_PRIVILEGES[kind] if (kind, name, p) not in self._revoked_privileges]
        return Response(body={"privilege_assignments": [
            {"principal": self.user, "privileges": [{"privilege": p} for p in held]}]})
