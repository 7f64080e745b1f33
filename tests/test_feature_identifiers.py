"""Names of feature tables and columns: validated in the policy as Unity Catalog validates them,
quoted wherever they reach SQL, and mapped to online table names in the store without two
Unity Catalog names ever sharing one."""

from __future__ import annotations

import re

import pytest

from shared import statements as sql
from shared.features import rdbms
from shared.online_store import physical_name
from shared.policy import FeatureTable, PolicyError, parse_policy


def policy_with(table: dict, tables: list[dict] | None = None) -> str:
    import json

    return json.dumps({"version": 1, "models": [{
        "name": "m", "environments": {"prod": {"endpoint": "m-prod"}},
        "features": {"store": {"kind": "rdbms", "connection_setting": "URL"}, "tables": tables or [table]}}]})


@pytest.mark.parametrize("source", [
    "main.fs.zones", "main.a-b.c", "Main.S.T", "main.s.t`x", "main.s.t\"x'y", "main.s.日本", "c.s." + "t" * 248,
])
def test_feature_table_names_unity_catalog_allows_are_accepted(source: str) -> None:
    assert FeatureTable(source=source, primary_keys=["id"]).source == source


@pytest.mark.parametrize("source", [
    "main.a/b.c", "main.a b.c", "main.s.t\x00", "main.s.t\x1f", "main.s.t\x7f", "main.s.t\n", "main.s", "a.b.c.d",
    "main..t", "main.s." + "t" * 256, "main.s." + "t" * 250,  # the last one: its default online name is too long
])
def test_feature_table_names_unity_catalog_refuses_are_rejected(source: str) -> None:
    with pytest.raises(PolicyError, match=r"tables\[0\]"):
        parse_policy(policy_with({"source": source, "primary_keys": ["id"]}))


@pytest.mark.parametrize(("keys", "timeseries", "ok"), [
    (["k`e\"y'1", "v al"], "t`s", True), (["a\nb"], None, False), (["a\tb"], None, False), ([""], None, False),
    (["id", "id"], None, False), (["id"], "t\x00s", False), (["x" * 256], None, False),
])
def test_key_column_names_may_hold_special_characters_but_not_control_characters(
        keys: list[str], timeseries: str | None, ok: bool) -> None:
    text = policy_with({"source": "main.s.t", "primary_keys": keys, "timeseries_key": timeseries})
    if ok:
        parse_policy(text)
    else:
        with pytest.raises(PolicyError, match=r"primary_keys|timeseries_key|primary key"):
            parse_policy(text)


def test_two_feature_tables_of_one_model_cannot_share_an_online_table() -> None:
    with pytest.raises(PolicyError, match=r"online table used by more than one feature table: \['main.s.t_online'\]"):
        parse_policy(policy_with({}, [
            {"source": "main.s.t", "primary_keys": ["id"]},
            {"source": "main.s.u", "primary_keys": ["id"], "online_table": "Main.S.T_online"}]))


def test_online_table_names_map_to_distinct_store_names_of_at_most_63_characters() -> None:
    # Plain names keep the readable mapping they always had.
    assert physical_name("main.fs.zones_online") == "main__fs__zones_online"
    assert physical_name("Main.FS.Zones_Online") == "main__fs__zones_online"  # Unity Catalog folds case
    names = ["a.b__c.d", "a__b.c.d", "a.b_.c", "a._b.c", "a-b.c.d", "a_b.c.d", "main.s.t`x", "main.s.t\"x",
             "main.s.t'x", "main.s.日本", "main.s.日本語", "main.s." + "t" * 60, "main.s." + "t" * 61,
             "main.s." + "t" * 255, "main.s." + "t" * 254 + "u", "a.b.c___1234567890abcdef"]
    mapped = [physical_name(n) for n in names]
    assert len(set(mapped)) == len(names), dict(zip(names, mapped, strict=True))
    for original, name in zip(names, mapped, strict=True):
        assert re.fullmatch(r"[a-z0-9_]{1,63}", name), (original, name)
        assert not name.startswith("_"), "names starting with '_' are the store's own tables"
    assert physical_name("a-b.c.d").startswith("a_b__c__d___")  # a readable prefix, then the hash


def test_every_name_in_the_publisher_sql_is_quoted() -> None:
    table = FeatureTable(source="main.q-s.t`b'l", primary_keys=["k`e\"y'1", "t`s"], timeseries_key="t`s")
    columns = ["k`e\"y'1", "t`s", "v al"]
    assert rdbms.snapshot_statement(table, columns, 3) == (
        "SELECT `k``e\"y'1`, `t``s`, `v al` FROM `main`.`q-s`.`t``b'l` VERSION AS OF 3 "
        "WHERE `k``e\"y'1` IS NOT NULL AND `t``s` IS NOT NULL "
        "QUALIFY ROW_NUMBER() OVER (PARTITION BY `k``e\"y'1`, `t``s` ORDER BY `t``s` DESC) = 1")
    assert rdbms.changes_statement(table, columns, 4, 6) == (
        "SELECT `k``e\"y'1`, `t``s`, `v al`, `_change_type`, `_commit_version` "
        "FROM table_changes('`main`.`q-s`.`t``b\\'l`', 4, 6) WHERE _change_type != 'update_preimage' "
        "AND `k``e\"y'1` IS NOT NULL AND `t``s` IS NOT NULL ORDER BY _commit_version, `t``s`")
    assert sql.literal("a\\'b") == "'a\\\\\\'b'"
