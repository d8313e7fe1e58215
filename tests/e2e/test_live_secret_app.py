"""The commonest ECS app, end to end: instances that read a plain secret once at start (seed 002's
``get_database_credentials`` with ``@lru_cache``), restarted one by one by the ``command`` deployer, under load,
with the rotator keeping that secret (``--live-secret``, no ``--template``) on the slot they should use.
Three rotations on each engine: 0 failed requests, the live secret always on the active slot and logging in,
its own keys kept. This is `rotator demo --app live-secret`."""

from __future__ import annotations

import io

import pytest

from rotator.demo.runner import demo
from rotator.demo.stack import DemoConfig
from tests.e2e.test_zero_downtime import MIN_REQUESTS, _dsn

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("engine", ["postgres", "mysql"])
def test_three_rotations_of_a_live_secret_app_fail_no_request(request: pytest.FixtureRequest, engine: str) -> None:
    dsn = _dsn(request, engine)
    config = DemoConfig(
        rotations=3,
        app="live-secret",
        mysql_dsn=dsn if engine == "mysql" else None,
        postgres_dsn=dsn if engine == "postgres" else None,
    )
    out = io.StringIO()
    result = demo(config, out)
    text = out.getvalue()
    assert result.ok, text[-4000:]
    assert [r.run.exit_code for r in result.rotations] == [0, 0, 0], text[-4000:]
    for r, (before, after) in zip(result.rotations, [("A", "B"), ("B", "A"), ("A", "B")], strict=True):
        report = r.run.report
        assert report["slots_before"] == {"active": before, "config": None, "live": before}
        assert report["slots_after"] == {"active": after, "config": None, "live": after}
        kinds = [s["step"] for s in report["steps"]]
        # The live secret is pointed at the new slot (proven) before the rolling restart, the old slot changes after.
        assert kinds.index("promote_live_pending") < kinds.index("deploy") < kinds.index("set_password")
        assert "render_config" not in kinds
    assert [r.config_slot_after for r in result.rotations] == ["B", "A", "B"]  # the live secret's slot
    assert result.during_rotations.served >= MIN_REQUESTS, text[-4000:]
    assert result.total.failed == 0 and result.during_rotations.failed == 0, result.failures
    assert result.slots_logging_in == {"A": True, "B": True, "live secret": True}
    assert "each reading the live secret once at start" in text
    assert "deleted the live secret" in result.cleaned
