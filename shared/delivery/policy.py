"""How a new version takes traffic (the policy's ``strategy``) and which aliases mark its progress.

Every strategy first adds the candidate beside the serving entities with a 0% route and smoke-
queries it through its own served entity, so no caller is answered by a version that has not
passed its smoke queries (docs/architecture.md principle 6). Then:

- ``direct``: 100% at once; the old entities stay at 0% for ``bake`` and are then removed.
- ``canary``: ``steps`` of increasing weight, each baked and (by default) analysed against the
  champion before the next (Argo Rollouts ``setWeight`` + ``pause`` + inline analysis; Argo Rollouts,
  "Canary Deployment Strategy", https://argoproj.github.io/argo-rollouts/features/canary/); after the
  last, 100% and ``bake`` as for ``direct``.
- ``ab``: a fixed ``split`` for ``duration``, then an analysis and a ``decision``: ``auto``
  promotes a Successful candidate and keeps the champion otherwise; ``operator`` pauses for an
  operator's ``promote`` or ``abort`` with the analysis in the record.

``bake`` at 100% is Argo's ``scaleDownDelaySeconds`` (default 30 s; Argo Rollouts,
"Rollout Specification", https://argoproj.github.io/argo-rollouts/features/specification/): a rollback in that
time is a traffic-only change. ``abort_delay`` (Argo's ``abortScaleDownDelaySeconds``, 30 s) keeps
an aborted candidate at 0% that long before it is removed. ``rollback_window`` goes on past the
rollout's end: the previous champion's served entity stays at 0% that long after a rollout ends
done, so ``rollback`` (Argo's ``undo``) is a route change, at the cost of keeping that entity
provisioned; after it the entity is removed and an undo deploys the version again.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from shared.monitoring.policy import Delay, Duration, seconds

ALIAS_NAME = r"^[A-Za-z][A-Za-z0-9_-]{0,254}$"
Alias = Annotated[str, Field(pattern=ALIAS_NAME)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ErrorRateCheck(_Strict):
    """One-sided non-inferiority on the error rate (5xx share) against the champion's over the same
    window (statsmodels, "test_proportions_2indep",
    https://www.statsmodels.org/stable/generated/statsmodels.stats.proportion.test_proportions_2indep.html):
    Successful when the upper confidence bound of
    p_candidate - p_champion is below ``margin``, Failed when the lower one is above it, else
    Inconclusive. A candidate passes only from ``stats.requests_to_pass`` requests: 268 with no
    errors at the defaults, ~830 beside a champion at 2% at a 10% step; each measurement names it."""

    margin: float = Field(0.01, gt=0, lt=1, description="the worst acceptable increase, as a fraction (0.01 = 1 pp)")
    alpha: float = Field(0.05, gt=0, lt=0.5, description="one-sided significance level")


class LatencyCheck(_Strict):
    """p95 of the model's execution time, candidate over champion."""

    max_ratio: float = Field(1.5, gt=1, description="Failed when the candidate's p95 is more than this times the "
                             "champion's")


class ShiftCheck(_Strict):
    """Prediction shift of the candidate against the champion over the same window: an
    effect size (PSI or KS D), never a raw p-value, which large samples make tiny for any shift."""

    metric: Literal["psi", "ks"] = "psi"
    threshold: float = Field(0.25, gt=0, description="Failed above this (PSI > 0.25: a major shift)")


class Analysis(_Strict):
    """The analysis of one step: measurements from the inference table, judged with Argo
    Rollouts' limits (https://argoproj.github.io/argo-rollouts/features/analysis/). A measurement below
    ``min_requests`` in either arm is
    Inconclusive, never Failed or Successful for lack of data."""

    min_requests: int = Field(100, ge=1, description="per arm; fewer: the measurement is inconclusive. The "
                              "error rate passes only from more (268 clean at a 1 pp margin; its measurements "
                              "name the number)")
    delivery_delay: Delay = Field(
        "1h", description="how late the inference table receives a request (Databricks: best effort, typically "
        "within an hour): a step's window is judged only once this much time has passed after it")
    error_rate: ErrorRateCheck | None = Field(default_factory=ErrorRateCheck)
    latency: LatencyCheck | None = Field(default_factory=LatencyCheck)
    prediction_shift: ShiftCheck | None = Field(default_factory=ShiftCheck)
    count: int = Field(1, ge=1, le=10, description="measurements per analysis run")
    interval: Duration | None = Field(None, description="between measurements (count > 1)")
    failure_limit: int = Field(0, ge=-1, description="Failed measurements tolerated (-1: never fail)")
    inconclusive_limit: int = Field(0, ge=0)
    consecutive_error_limit: int = Field(4, ge=0, description="failed queries in a row tolerated")
    on_inconclusive: Literal["pause", "extend", "fail"] = Field(
        "pause", description="pause for an operator (Argo), extend the step by its bake time, or fail")
    max_extensions: int = Field(3, ge=0, description="extend: at most this many times, then pause")

    @property
    def metrics(self) -> list[str]:
        return [m for m in ("error_rate", "latency", "prediction_shift") if getattr(self, m) is not None]

    @model_validator(mode="after")
    def _some(self) -> Analysis:
        if not self.metrics:
            raise ValueError("an analysis needs at least one of error_rate, latency, prediction_shift")
        if self.count > 1 and self.interval is None:
            raise ValueError("count > 1 needs an interval between measurements")
        return self


class CanaryStep(_Strict):
    weight: int = Field(ge=1, le=99, description="% of traffic to the candidate")
    bake: Duration = Field(description="how long the candidate takes this share before it is judged")
    analysis: bool = Field(True, description="judge the step against the champion before the next one")


class Strategy(_Strict):
    kind: Literal["direct", "canary", "ab"] = "direct"
    steps: list[CanaryStep] = Field(default_factory=list, description="canary: the traffic steps, in order")
    split: int | None = Field(None, ge=1, le=99, description="ab: % of traffic to the candidate")
    duration: Duration | None = Field(None, description="ab: how long the split runs before it is judged")
    decision: Literal["auto", "operator"] = Field(
        "operator", description="ab: promote a Successful candidate and keep the champion otherwise (auto), or "
        "pause with the analysis until an operator promotes or aborts")
    bake: Delay = Field("30s", description="at 100%: how long the old entities stay (at 0%) before removal")
    abort_delay: Delay = Field("30s", description="how long an aborted candidate stays (at 0%) before removal")
    rollback_window: Delay = Field(
        "3h", description="after a rollout ends done: how long the previous champion's served entity stays on the "
        "endpoint at 0%, so an undo is a route change; it stays provisioned (and billed) that long. 0s: removed "
        "at once")
    analysis: Analysis = Field(default_factory=Analysis)

    @model_validator(mode="after")
    def _shape(self) -> Strategy:
        if self.kind == "canary":
            if not self.steps:
                raise ValueError("a canary needs steps (weight and bake of each)")
            weights = [s.weight for s in self.steps]
            if weights != sorted(set(weights)):
                raise ValueError(f"canary step weights must increase: {weights}")
        elif self.steps:
            raise ValueError(f"steps are for a canary, not {self.kind}")
        if self.kind == "ab":
            if self.split is None or self.duration is None:
                raise ValueError("an A/B test needs split (the candidate's %) and duration")
        elif self.split is not None or self.duration is not None:
            raise ValueError(f"split and duration are for an A/B test, not {self.kind}")
        return self

    def stages(self) -> list[dict[str, Any]]:
        """The traffic stages before full promotion: weight, bake seconds, analysed or not."""
        if self.kind == "canary":
            return [{"weight": s.weight, "bake": seconds(s.bake), "analysis": s.analysis} for s in self.steps]
        if self.kind == "ab":
            assert self.split is not None and self.duration is not None
            return [{"weight": self.split, "bake": seconds(self.duration), "analysis": True}]
        return []


class Aliases(_Strict):
    """The alias lifecycle (docs/architecture.md "Rollout"): ``challenger`` when the candidate first takes
    traffic, ``champion`` when it passed (analysis, or smoke for ``direct``) and takes it all,
    ``production`` when an A/B test completes with it promoted. The previous champion is kept as
    the rollback pointer."""

    challenger: Alias | None = "Challenger"
    champion: list[Alias] = Field(default_factory=lambda: ["Champion"])
    production: Alias | None = "Production"

    @model_validator(mode="before")
    @classmethod
    def _champion_list(cls, data: Any) -> Any:
        """A plain list names the champion aliases only (the policy's first form)."""
        return {"challenger": None, "champion": data, "production": None} if isinstance(data, list) else data

    @model_validator(mode="after")
    def _distinct(self) -> Aliases:
        names = [a for a in (self.challenger, *self.champion, self.production) if a]
        dup = sorted({a for a in names if names.count(a) > 1})
        if dup:
            raise ValueError(f"an alias can have one role only: {dup}")
        return self
