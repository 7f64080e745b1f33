"""A Titanic-like survival classifier whose features live in a third-party online store.

Nothing is downloaded: ``make_passengers`` synthesizes a passengers table shaped like the
well-known Titanic one (``PassengerId`` primary key, ``Pclass``, ``Sex``, ``Age`` with about a
fifth missing, ``SibSp``, ``Parch``, ``Fare``, ``Embarked`` with two missing, and ``Survived``).
Survival is drawn from a logistic model in which women, first class, children and small families
fare better (about 40 % survive), so a classifier has something real to learn (holdout accuracy
about 0.8).

``train_and_register`` fits a scikit-learn pipeline (median / most-frequent imputation, one-hot
encoding, logistic regression) and registers it with a ``feature_spec.json``
(``local.workspace.feature_lookup``) whose one lookup reads the passengers' features by
``PassengerId`` from a third-party store: the served entity finds the store's connection URL in
the environment variable ``connection_env`` (on Databricks a ``{{secrets/scope/key}}`` reference).
A client sends only ``{"PassengerId": ...}``. ``publish_passengers`` writes the features to such a
store (MySQL/MariaDB, PostgreSQL or SQLite) with ``shared.online_store.OnlineStore``.

The model is trained on the same frame the store holds, with numeric features as float64: the
model's signature declares them ``double`` so that a passenger without a row (all features null)
can still be scored; the imputers then fill in the training medians and most frequent values.
MLflow plumbing (URI handling, experiment, spec upload before registration) is ``local.taxi``'s.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pandas as pd

from local.taxi import log_and_register_with_spec, publish_features

KEY = "PassengerId"
FEATURES = ["Pclass", "Sex", "Age", "SibSp", "Parch", "Fare", "Embarked"]
NUMERIC = ["Pclass", "Age", "SibSp", "Parch", "Fare"]
CATEGORICAL = ["Sex", "Embarked"]
TARGET = "Survived"

# Timing and metrics of the last train_and_register call, for reports.
last_timings: dict[str, float] = {}


def make_passengers(n: int = 891, seed: int = 0) -> pd.DataFrame:
    """Synthetic passengers, deterministic for a given (n, seed).

    Class shares 24/21/55 %; men 56/59/71 % by class; age ~ N(38/30/25 by class, 14) clipped to
    0.42-80 (whole years from 1 up), then 20 % of ages removed; siblings/spouses and
    parents/children skewed to 0; fare ~ 84/21/13 by class x lognormal(0, 0.45) x (1 + 0.15 per
    relative aboard); port S/C/Q (Cherbourg likelier in first class), two ports removed.
    logit P(survived) = -0.2 + 2.5 female - 1.0 (class - 1) - 0.03 (age - 30) + 1.0 child (< 12)
    - 0.35 siblings - 0.15 parents + 0.3 Cherbourg, from the true age before its removal.
    """
    rng = np.random.default_rng(seed)
    pclass = rng.choice([1, 2, 3], size=n, p=[0.24, 0.21, 0.55])
    male_share = np.select([pclass == 1, pclass == 2], [0.56, 0.59], 0.71)
    female = rng.random(n) >= male_share
    mean_age = np.select([pclass == 1, pclass == 2], [38.0, 30.0], 25.0)
    age = np.clip(rng.normal(mean_age, 14.0), 0.42, 80.0)
    age = np.where(age >= 1.0, np.round(age), np.round(age, 2))
    sibsp = rng.choice([0, 1, 2, 3, 4, 5, 8], size=n, p=[0.68, 0.23, 0.03, 0.02, 0.02, 0.01, 0.01])
    parch = rng.choice([0, 1, 2, 3, 4, 5, 6], size=n, p=[0.76, 0.13, 0.08, 0.01, 0.01, 0.005, 0.005])
    fare_base = np.select([pclass == 1, pclass == 2], [84.0, 21.0], 13.0)
    fare = np.round(fare_base * rng.lognormal(0.0, 0.45, size=n) * (1.0 + 0.15 * (sibsp + parch)), 4)
    cherbourg = np.select([pclass == 1, pclass == 2], [0.38, 0.12], 0.12)
    queenstown = np.select([pclass == 1, pclass == 2], [0.01, 0.02], 0.14)
    u = rng.random(n)
    embarked = np.where(u < cherbourg, "C", np.where(u < cherbourg + queenstown, "Q", "S")).astype(object)

    logit = (-0.2 + 2.5 * female - 1.0 * (pclass - 1) - 0.03 * (age - 30.0) + 1.0 * (age < 12)
             - 0.35 * sibsp - 0.15 * parch + 0.3 * (embarked == "C"))
    survived = (rng.random(n) < 1.0 / (1.0 + np.exp(-logit))).astype("int64")

    age = np.where(rng.random(n) < 0.20, np.nan, age)
    missing_port = rng.choice(n, size=min(2, n), replace=False)
    embarked[missing_port] = None
    return pd.DataFrame(
        {
            KEY: np.arange(1, n + 1, dtype="int64"),
            "Pclass": pclass.astype("int64"),
            "Sex": pd.Series(np.where(female, "female", "male"), dtype=object),
            "Age": age.astype("float64"),
            "SibSp": sibsp.astype("int64"),
            "Parch": parch.astype("int64"),
            "Fare": fare.astype("float64"),
            "Embarked": pd.Series(embarked, dtype=object),
            TARGET: survived,
        }
    )


def feature_table(passengers: pd.DataFrame) -> pd.DataFrame:
    """The passengers' feature table: the primary key and the features, no label."""
    return passengers[[KEY, *FEATURES]].copy()


def model_inputs(frame: pd.DataFrame) -> pd.DataFrame:
    """The model's input columns, numeric ones as float64 (``double`` in the signature)."""
    inputs = frame[FEATURES].copy()
    for name in NUMERIC:
        inputs[name] = inputs[name].astype("float64")
    for name in CATEGORICAL:
        inputs[name] = inputs[name].astype(object)
    return inputs


def feature_spec(table_name: str, connection_env: str, online_table: str) -> dict[str, Any]:
    """One lookup by ``PassengerId`` in a third-party store reached through ``connection_env``."""
    return {
        "lookups": [
            {
                "table_name": table_name,
                "lookup_key": [KEY],
                "feature_names": list(FEATURES),
                "rename_outputs": {},
                "online_store": {"connection_env": connection_env, "online_table": online_table,
                                 "primary_keys": [KEY]},
            }
        ],
        "exclude_columns": [KEY],
    }


def request_records(passenger_ids: list[int]) -> list[dict[str, Any]]:
    """What a client sends: IDs only."""
    return [{KEY: int(i)} for i in passenger_ids]


def publish_passengers(store_url: str, online_table: str, passengers: pd.DataFrame | None = None,
                       seed: int = 0) -> str:
    """Write the passengers' features (``feature_table``) to the online store at ``store_url``
    (``ensure_table`` + ``upsert`` keyed by ``PassengerId``; missing values stored as NULL).
    ``passengers`` defaults to ``make_passengers(seed=seed)``. Returns the physical table name."""
    frame = feature_table(make_passengers(seed=seed) if passengers is None else passengers)
    return publish_features(store_url, online_table, frame, [KEY])


def build_pipeline(seed: int = 0) -> Any:
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    numeric = Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())])
    categorical = Pipeline([
        ("impute", SimpleImputer(strategy="most_frequent")),
        ("encode", OneHotEncoder(handle_unknown="ignore")),
    ])
    prepare = ColumnTransformer([("num", numeric, NUMERIC), ("cat", categorical, CATEGORICAL)])
    return Pipeline([("prepare", prepare), ("classify", LogisticRegression(max_iter=1000, random_state=seed))])


def train_and_register(
    tracking_uri: str,
    model_name: str,
    table_name: str,
    connection_env: str,
    online_table: str,
    seed: int = 0,
    n: int = 891,
    *,
    experiment_name: str = "titanic",
    artifact_location: str | None = None,
    tags: dict[str, str] | None = None,
) -> str:
    """Train a survival classifier on ``make_passengers(n, seed)`` and register it with a feature
    spec that looks every feature up by ``PassengerId`` in ``online_table`` of the store named by
    ``connection_env`` (see ``feature_spec``). Logs accuracy and ROC AUC on a 20 % holdout; the
    input example is IDs only. Returns the new version."""
    from sklearn.metrics import accuracy_score, roc_auc_score

    began = time.monotonic()
    passengers = make_passengers(n=n, seed=seed)
    split = int(len(passengers) * 0.8)
    train, test = passengers.iloc[:split], passengers.iloc[split:]
    model = build_pipeline(seed)
    model.fit(model_inputs(train), train[TARGET])
    probability = model.predict_proba(model_inputs(test))[:, 1]
    metrics = {
        "accuracy": float(accuracy_score(test[TARGET], (probability >= 0.5).astype(int))),
        "roc_auc": float(roc_auc_score(test[TARGET], probability)),
        "survival_rate": float(passengers[TARGET].mean()),
    }
    trained = time.monotonic()

    example = pd.DataFrame(request_records(train[KEY].head(5).tolist()))
    version = log_and_register_with_spec(
        tracking_uri, model_name, model, model_inputs(train), example,
        feature_spec(table_name, connection_env, online_table), metrics,
        {"seed": seed, "n": n, "features": ",".join(FEATURES), "table_name": table_name, "online_table": online_table,
         "connection_env": connection_env},
        experiment_name=experiment_name, artifact_location=artifact_location, run_name=f"{model_name}-train-seed{seed}",
        tags=tags,
    )
    last_timings.clear()
    last_timings.update({"train_seconds": trained - began, "log_register_seconds": time.monotonic() - trained,
                         **metrics})
    return version

