"""In-place collection upgrades: plan, run (convert / backfill), status, cutover, rollback, cleanup."""

from qdrant_compat.upgrade.lifecycle import cleanup, cutover, rollback, upgrade_status
from qdrant_compat.upgrade.plan import UpgradePlan, plan_upgrade
from qdrant_compat.upgrade.runner import RunReport, run_upgrade
from qdrant_compat.upgrade.state import JobState, provenance_key

__all__ = [
    "JobState",
    "RunReport",
    "UpgradePlan",
    "cleanup",
    "cutover",
    "plan_upgrade",
    "provenance_key",
    "rollback",
    "run_upgrade",
    "upgrade_status",
]
