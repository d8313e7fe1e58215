"""The steps a plan is made of: one frozen dataclass per kind, carrying exactly what that kind needs.

Steps are data (alembic's operations are the model): the planner builds them, ``--dry-run`` prints them,
the report records them and the logs describe them, all from :meth:`Step.describe`. What a step *does*
lives in one registered handler per kind (rotator.apply).

A new step kind: a dataclass here (with ``kind``), a handler in rotator/apply.py registered with
``@handles(TheStep)``, and the planner emits it. ``tests/unit/test_apply_registry.py`` fails until every kind
has a handler.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, ClassVar

from rotator.drain import QUIET
from rotator.secrets import Slot


class Source(StrEnum):
    """Where a password comes from."""

    CURRENT = "current"  # the slot secret's AWSCURRENT version (as healed so far in this run)
    PENDING = "pending"  # the pending version (observed, or written by this run)
    CONFIG = "config"  # the deployed app config
    LIVE = "live"  # the live secret's AWSCURRENT (--live-secret), when it names this slot


@dataclass(frozen=True)
class Step:
    kind: ClassVar[str]
    reason: str

    @property
    def slot(self) -> Slot | None:
        return None

    def describe(self) -> dict[str, Any]:
        """What the plan, the report and the log say of this step."""
        return {"step": self.kind, "slot": self.slot, "reason": self.reason}


@dataclass(frozen=True)
class SlotStep(Step):
    """A step about one slot."""

    on: Slot

    @property
    def slot(self) -> Slot | None:
        return self.on


# ---------------------------------------------------------------- admin


@dataclass(frozen=True)
class DiscardAdminPending(Step):
    kind = "discard_admin_pending"


@dataclass(frozen=True)
class PromoteAdminPending(Step):
    kind = "promote_admin_pending"


@dataclass(frozen=True)
class WriteAdminPending(Step):
    kind = "write_admin_pending"


@dataclass(frozen=True)
class SetAdminPassword(Step):
    kind = "set_admin_password"


@dataclass(frozen=True)
class VerifyAdmin(Step):
    kind = "verify_admin"


# ---------------------------------------------------------------- slot secret versions


@dataclass(frozen=True)
class DiscardSlotPending(Step):
    kind = "discard_slot_pending"


@dataclass(frozen=True)
class WriteSlotPending(Step):
    """A new pending version: the current one (as healed) with these changes."""

    kind = "write_slot_pending"
    adopt: tuple[tuple[Slot, Source], ...] = ()  # record a password that already logs in
    fresh: tuple[Slot, ...] = ()  # generate a new password
    active: Slot | None = None  # move active_slot

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        out["changes"] = {
            "adopt": [f"{slot}:{src.value}" for slot, src in self.adopt],
            "fresh": list(self.fresh),
            "active": self.active,
        }
        return out


@dataclass(frozen=True)
class PromoteSlotPending(Step):
    kind = "promote_slot_pending"


# ---------------------------------------------------------------- database users


@dataclass(frozen=True)
class CreateUser(SlotStep):
    kind = "create_user"
    source: Source = Source.PENDING


@dataclass(frozen=True)
class SetPassword(SlotStep):
    kind = "set_password"
    source: Source = Source.PENDING


@dataclass(frozen=True)
class VerifyLogin(SlotStep):
    kind = "verify_login"
    source: Source = Source.PENDING


@dataclass(frozen=True)
class MarkUser(SlotStep):
    """Give a slot user this rotator made before markers existed its marker."""

    kind = "mark_user"


@dataclass(frozen=True)
class SyncGrants(SlotStep):
    """Give the standby slot user the rights the live slot's user holds and it lacks (never revokes; never run on
    the live slot). ``missing``: those rights as observed, normalised by name."""

    kind = "sync_grants"
    missing: tuple[str, ...] = ()

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        out["missing"] = list(self.missing)
        return out


# ---------------------------------------------------------------- config, deployment, health


@dataclass(frozen=True)
class FixPermissions(Step):
    kind = "fix_permissions"


@dataclass(frozen=True)
class RenderConfig(SlotStep):
    kind = "render_config"


@dataclass(frozen=True)
class RestoreConfig(Step):
    """Rollback: put back the config file as it was before this run rendered it."""

    kind = "restore_config"


@dataclass(frozen=True)
class Deploy(SlotStep):
    kind = "deploy"


@dataclass(frozen=True)
class HealthCheck(SlotStep):
    kind = "health_check"


# ---------------------------------------------------------------- the live secret (rotator.live)


@dataclass(frozen=True)
class DiscardLivePending(Step):
    """An interrupted live secret write left an AWSPENDING version: apps read only AWSCURRENT; drop it."""

    kind = "discard_live_pending"


@dataclass(frozen=True)
class WriteLivePending(SlotStep):
    """Write the live secret pointing at this slot's current credentials, as AWSPENDING."""

    kind = "write_live_pending"


@dataclass(frozen=True)
class PromoteLivePending(SlotStep):
    """Prove the pending live credentials log in, then make them the live secret's AWSCURRENT."""

    kind = "promote_live_pending"


@dataclass(frozen=True)
class DrainSlot(SlotStep):
    """Wait until the (old) slot's user stops being used, up to ``timeout`` seconds (rotator.drain)."""

    kind = "drain_slot"
    timeout: float = 60.0
    quiet: float = QUIET

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "timeout_s": self.timeout, "quiet_s": self.quiet}


ALL_KINDS: tuple[type[Step], ...] = (
    DiscardAdminPending,
    PromoteAdminPending,
    WriteAdminPending,
    SetAdminPassword,
    VerifyAdmin,
    DiscardSlotPending,
    WriteSlotPending,
    PromoteSlotPending,
    CreateUser,
    SetPassword,
    VerifyLogin,
    MarkUser,
    SyncGrants,
    FixPermissions,
    RenderConfig,
    RestoreConfig,
    Deploy,
    HealthCheck,
    DiscardLivePending,
    WriteLivePending,
    PromoteLivePending,
    DrainSlot,
)
