"""Why a feature table cannot become ready as configured."""


class FeatureFailure(Exception):
    """A table can never become ready as configured: the rollout fails with this reason."""
