"""OpenAPI document of a serving endpoint (``GET /api/2.0/serving-endpoints/{name}/openapi``).

The SDK fetches it with ``Accept: text/plain`` and returns the body unparsed
("get_open_api ... the body is an OpenAPI JSON document"). Databricks describes it as "the query
schema of the serving endpoint in OpenAPI format ... the supported paths, input and output format
and datatypes" [SRC docstring]. The exact layout of Databricks' document is not published,
so this one is built from first principles [INF]: OpenAPI 3.1, one POST operation per invocation
path (the endpoint, and each served entity under ``/served-models/{name}/invocations``), whose
request body accepts the four MLflow scoring formats typed from the model's
MLflow signature when it has one, and whose response is ``{"predictions": [...]}``.
"""

from __future__ import annotations

from typing import Any

_SCALARS = {
    "boolean": {"type": "boolean"},
    "integer": {"type": "integer", "format": "int32"},
    "long": {"type": "integer", "format": "int64"},
    "float": {"type": "number", "format": "float"},
    "double": {"type": "number", "format": "double"},
    "string": {"type": "string"},
    "binary": {"type": "string", "format": "byte"},
    "datetime": {"type": "string", "format": "date-time"},
}


def _type_schema(spec_type: Any) -> dict[str, Any]:
    """JSON schema of an MLflow column type (DataType, Array, Object, Map, AnyType)."""
    name = getattr(spec_type, "name", None)
    if isinstance(name, str) and name in _SCALARS:
        return dict(_SCALARS[name])
    dtype = getattr(spec_type, "dtype", None)  # mlflow.types.schema.Array
    if dtype is not None and type(spec_type).__name__ == "Array":
        return {"type": "array", "items": _type_schema(dtype)}
    properties = getattr(spec_type, "properties", None)  # mlflow.types.schema.Object
    if isinstance(properties, list):
        return {
            "type": "object",
            "properties": {p.name: _type_schema(p.dtype) for p in properties},
            "required": [p.name for p in properties if getattr(p, "required", True)],
        }
    value_type = getattr(spec_type, "value_type", None)  # mlflow.types.schema.Map
    if value_type is not None:
        return {"type": "object", "additionalProperties": _type_schema(value_type)}
    return {}


def _tensor_schema(spec: Any) -> dict[str, Any]:
    kind = getattr(getattr(spec, "type", None), "kind", "")
    leaf = {"b": {"type": "boolean"}, "i": {"type": "integer"}, "u": {"type": "integer"}, "f": {"type": "number"}}
    schema: dict[str, Any] = dict(leaf.get(kind, {"type": "string"}))
    for _ in range(max(len(getattr(spec, "shape", ()) or ()) - 1, 0)):
        schema = {"type": "array", "items": schema}
    return {"type": "array", "items": schema}


def _columns(schema: Any) -> list[tuple[str | None, dict[str, Any], bool]]:
    if schema is None:
        return []
    if schema.is_tensor_spec():
        return [(getattr(s, "name", None), _tensor_schema(s), True) for s in schema.inputs]
    return [(c.name, _type_schema(c.type), bool(getattr(c, "required", True))) for c in schema.inputs]


def request_schema(input_schema: Any) -> dict[str, Any]:
    cols = _columns(input_schema)
    named = [c for c in cols if c[0]]
    if not named:
        row: dict[str, Any] = {}
        columnar: dict[str, Any] = {}
        split_columns: dict[str, Any] = {"type": "array", "items": {"type": "string"}}
        split_rows: dict[str, Any] = {"type": "array", "items": {"type": "array"}}
        if cols:  # one unnamed tensor or column
            row = cols[0][1]
            columnar = {"type": "array", "items": cols[0][1]}
    else:
        props = {name: s for name, s, _ in named}
        required = [name for name, _, req in named if req]
        row = {"type": "object", "properties": props, "required": required}
        columnar = {
            "type": "object",
            "properties": {name: {"type": "array", "items": s} for name, s, _ in named},
            "required": required,
        }
        split_columns = {"type": "array", "items": {"type": "string", "enum": [n for n, _, _ in named]}}
        split_rows = {"type": "array", "items": {"type": "array", "prefixItems": [s for _, s, _ in named]}}
    return {
        "oneOf": [
            {
                "type": "object",
                "properties": {
                    "dataframe_split": {
                        "type": "object",
                        "properties": {
                            "columns": split_columns,
                            "index": {"type": "array"},
                            "data": split_rows,
                        },
                        "required": ["data"],
                    },
                    "params": {"type": "object"},
                },
                "required": ["dataframe_split"],
            },
            {
                "type": "object",
                "properties": {"dataframe_records": {"type": "array", "items": row}, "params": {"type": "object"}},
                "required": ["dataframe_records"],
            },
            {
                "type": "object",
                "properties": {"instances": {"type": "array", "items": row}, "params": {"type": "object"}},
                "required": ["instances"],
            },
            {
                "type": "object",
                "properties": {"inputs": columnar or {}, "params": {"type": "object"}},
                "required": ["inputs"],
            },
        ]
    }


def response_schema(output_schema: Any) -> dict[str, Any]:
    cols = _columns(output_schema)
    if not cols:
        items: dict[str, Any] = {}
    elif len(cols) == 1 and not cols[0][0]:
        items = cols[0][1]
    else:
        items = {"type": "object", "properties": {(n or str(i)): s for i, (n, s, _) in enumerate(cols)}}
    return {
        "type": "object",
        "properties": {"predictions": {"type": "array", "items": items}},
        "required": ["predictions"],
    }


_ERROR = {
    "type": "object",
    "properties": {"error_code": {"type": "string"}, "message": {"type": "string"}},
    "required": ["error_code", "message"],
}


def _operation(title: str, input_schema: Any, output_schema: Any) -> dict[str, Any]:
    return {
        "post": {
            "summary": title,
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": request_schema(input_schema)}},
            },
            "responses": {
                "200": {
                    "description": "Predictions of the served model",
                    "headers": {"served-model-name": {"schema": {"type": "string"}}},
                    "content": {"application/json": {"schema": response_schema(output_schema)}},
                },
                "400": {"description": "Invalid input", "content": {"application/json": {"schema": _ERROR}}},
            },
        }
    }


def build_document(
    base_url: str,
    endpoint_name: str,
    config_version: int | None,
    entities: list[tuple[str, Any | None]],
) -> dict[str, Any]:
    """``entities``: (served entity name, mlflow ModelSignature or None) of the config described."""
    signatures = [sig for _, sig in entities]
    first = signatures[0] if signatures else None
    paths: dict[str, Any] = {
        f"/serving-endpoints/{endpoint_name}/invocations": _operation(
            f"Query serving endpoint {endpoint_name}",
            first.inputs if first is not None else None,
            first.outputs if first is not None else None,
        )
    }
    for served_name, sig in entities:
        paths[f"/serving-endpoints/{endpoint_name}/served-models/{served_name}/invocations"] = _operation(
            f"Query served entity {served_name}",
            sig.inputs if sig is not None else None,
            sig.outputs if sig is not None else None,
        )
    return {
        "openapi": "3.1.0",
        "info": {"title": endpoint_name, "version": str(config_version or 0)},
        "servers": [{"url": base_url}],
        "components": {"securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}}},
        "security": [{"bearerAuth": []}],
        "paths": paths,
    }
