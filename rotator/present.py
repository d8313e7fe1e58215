"""The readable face: what a person at a terminal sees on stdout instead of a JSON document.

Pure renderers from the JSON-able reports (``Report.as_dict()``, ``CheckReport.as_dict()``) to text, so a fleet
can render any database's report the same way, plus :func:`wants_table` (the ``--output`` rule: a table on a
terminal, JSON for a pipe, a file, or ECS) and :class:`TerminalProgress` (a steady progress line on a terminal
while a deployment rolls out). Nothing here reads a secret: the reports carry none.
"""

from __future__ import annotations

import shutil
import textwrap
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TextIO


def wants_table(output: str, stream: TextIO) -> bool:
    """``table``: always; ``json``: never; ``auto``: when ``stream`` is a terminal."""
    if output == "auto":
        isatty = getattr(stream, "isatty", None)
        return bool(isatty and isatty())
    return output == "table"


def _width() -> int:
    return max(60, min(shutil.get_terminal_size((110, 24)).columns, 160))


def table(headers: Sequence[str], rows: Iterable[Sequence[str]], *, width: int | None = None) -> str:
    """A plain-text table: every column as wide as its widest cell but the last, which wraps."""
    body = [[str(c) for c in row] for row in rows]
    width = width or _width()
    widths = [
        max(len(headers[i]), *(len(r[i]) for r in body)) if body else len(headers[i]) for i in range(len(headers))
    ]
    lead = sum(widths[:-1]) + 2 * (len(headers) - 1)
    last = max(20, width - lead)
    lines = [_line(headers, widths), _line(["-" * w for w in widths[:-1]] + ["-" * min(widths[-1], last)], widths)]
    for row in body:
        wrapped = textwrap.wrap(row[-1], last, break_on_hyphens=False) or [""]
        lines.append(_line([*row[:-1], wrapped[0]], widths))
        lines.extend(" " * lead + more for more in wrapped[1:])
    return "\n".join(line.rstrip() for line in lines)


def _line(cells: Sequence[str], widths: Sequence[int]) -> str:
    return "  ".join(cell.ljust(widths[i]) if i < len(cells) - 1 else cell for i, cell in enumerate(cells))


# ---------------------------------------------------------------- rotator check


def check_text(report: Mapping[str, Any], *, title: str | None = None) -> str:
    """``rotator check``'s table and a last line that says what the exit code means."""
    rows = [(c["check"], c["status"], c["detail"]) for c in report["checks"]]
    failed = report.get("failed") or [c["check"] for c in report["checks"] if c["status"] == "FAIL"]
    out = [title] if title else []
    out.append(table(("check", "result", "detail"), rows))
    out.append("")
    if failed:
        out.append(
            f"{len(failed)} check(s) failed: {', '.join(failed)}. Fix what each detail names, then run "
            "`rotator check` again (exit 2)."
        )
    else:
        out.append("All checks passed: next, `rotator rotate --dry-run`, then `rotator rotate`.")
    return "\n".join(out)


# ---------------------------------------------------------------- rotate / status


def _logs_in(slot: Mapping[str, Any]) -> str:
    if not slot.get("exists"):
        return "missing"
    sources = [k.removesuffix("_password_logs_in") for k, v in slot.items() if k.endswith("_password_logs_in") and v]
    failing = [
        k.removesuffix("_password_logs_in") for k, v in slot.items() if k.endswith("_password_logs_in") and not v
    ]
    if sources:
        text = "yes (" + ", ".join(sources) + ")"
    else:
        text = "no"
    if failing:
        text += "; fails: " + ", ".join(failing)
    return text


def _credential_age(cred: Mapping[str, Any] | None) -> str:
    """One credential of the report's ``ages``: its age, marked when overdue."""
    if not cred:
        return "?"
    return str(cred.get("age", "unknown")) + (" OVERDUE" if cred.get("overdue") else "")


def _age(value: Any) -> str:
    """A duration in seconds (or an already readable text) as a short age: 3d 4h, 5h 2m, 40s."""
    if isinstance(value, str) or value is None:
        return str(value or "")
    seconds = int(value)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    return f"{minutes}m {secs}s" if minutes else f"{secs}s"


def world_text(report: Mapping[str, Any]) -> str:
    """A short summary of what was observed: the slots, which logs in, where the config points, pending versions."""
    obs: Mapping[str, Any] = report.get("observed") or {}
    if not obs:
        return ""
    active, config = obs.get("active_slot"), obs.get("config_slot")
    slots: Mapping[str, Mapping[str, Any]] = obs.get("slots") or {}
    policy: Mapping[str, Any] = report.get("ages") or {}
    ages: Mapping[str, Any] = policy.get("credentials") or {}
    headers = ["slot", "role", "user exists", "logs in"]
    if ages:
        headers.append("age")
    headers.append("notes")
    rows = []
    for name, st in slots.items():
        role = "active" if name == active else "standby"
        notes = []
        if config == name:
            notes.append("the config points here")
        if st.get("exists") and st.get("marked") is False:
            notes.append("not marked")
        if st.get("privileges"):
            notes.append("holds " + ", ".join(st["privileges"]))
        row = [name, role, "yes" if st.get("exists") else "no", _logs_in(st)]
        if ages:
            row.append(_credential_age(ages.get(f"slot {name}")))
        rows.append([*row, "; ".join(notes) or "-"])
    lines = [f"engine {obs.get('engine', '?')}: active slot {active}"]
    if obs.get("config_present"):
        lines[0] += f", the config points at slot {config}" if config else ", the config holds neither slot's user"
    elif "config_present" in obs:
        lines[0] += ", no config file yet" if report.get("renders_config", True) else ""
    lines.append(
        f"admin: {obs.get('admin_login', '?')} password logs in"
        + (f" (age {_credential_age(ages['admin'])})" if "admin" in ages else "")
        + f"; pending versions: slot secret {'yes' if obs.get('pending_slot_version') else 'no'}, "
        f"admin secret {'yes' if obs.get('pending_admin_version') else 'no'}; deployment {obs.get('deployment', '?')}"
    )
    live: Mapping[str, Any] | None = obs.get("live_secret")
    if live is not None:
        named = f"slot {live['slot']}" if live.get("slot") else "nobody yet"
        drift = (
            "" if live.get("exact") or not live.get("slot") else " (differs from the slot secret: rotate rewrites it)"
        )
        lines.append(
            f"live secret: names {named}{drift}" + ("; a pending version exists" if live.get("pending_version") else "")
        )
    for problem in obs.get("admin_problems") or ():
        lines.append(f"admin problem: {problem}")
    if obs.get("health_precheck"):
        lines.append(f"health URL on the live slot: {obs['health_precheck']}")
    if policy:
        overdue = ", ".join(policy.get("overdue") or ()) or "none"
        lines.append(
            f"next rotation due: {policy.get('next_rotation_due')}; --max-age {policy.get('max_age')}, overdue: "
            f"{overdue}" + (f"; --rotate-after {policy['rotate_after']}" if policy.get("rotate_after") else "")
        )
    lines.append("")
    lines.append(table(headers, rows))
    return "\n".join(lines)


def _step_rows(steps: Sequence[Mapping[str, Any]], *, with_outcome: bool) -> list[list[str]]:
    rows = []
    for i, st in enumerate(steps, 1):
        row = [str(i), str(st.get("step", "?")), str(st.get("slot") or "-")]
        if with_outcome:
            outcome = str(st.get("outcome", ""))
            if st.get("duration_ms"):
                outcome += f" {st['duration_ms']:.0f}ms"
            row.append(outcome)
        reason = str(st.get("reason", ""))
        if st.get("error"):
            reason += f" [error: {st['error']}]"
        rows.append([*row, reason])
    return rows


def report_text(report: Mapping[str, Any]) -> str:
    """`status`, `rotate --dry-run` and `rotate` for a person: the world, the plan (or what ran) with a reason per
    step, the steps that undo a failed flip, notes, and the outcome."""
    dry = bool(report.get("dry_run"))
    out = []
    world = world_text(report)
    if world:
        out += [world, ""]
    steps: Sequence[Mapping[str, Any]] = report.get("steps") or []
    rollback: Sequence[Mapping[str, Any]] = report.get("rollback") or []
    planned = dry or all(st.get("outcome") == "planned" for st in steps)
    if steps:
        out.append("plan (nothing was changed):" if dry else "steps:")
        head = ["#", "step", "slot"] if planned else ["#", "step", "slot", "outcome"]
        out.append(table([*head, "reason"], _step_rows(steps, with_outcome=not planned)))
    elif report.get("exit_code", 0) == 0:
        out.append("nothing to do: the world is as it should be")
    if rollback:
        out.append("")
        ran = any(st.get("outcome") not in (None, "planned") for st in rollback)
        out.append("rollback (run):" if ran and not dry else "rollback (would undo a failed flip, in this order):")
        head = ["#", "step", "slot", "outcome"] if ran and not dry else ["#", "step", "slot"]
        out.append(table([*head, "reason"], _step_rows(rollback, with_outcome=ran and not dry)))
    for note in report.get("notes") or ():
        out.append(f"note: {note}")
    if report.get("blocked"):
        out.append(f"blocked: {report['blocked']}")
    out.append("")
    code = report.get("exit_code", 0)
    outcome = report.get("outcome", "?")
    took = f" in {report.get('duration_ms', 0) / 1000:.1f}s" if report.get("duration_ms") else ""
    if code:
        out.append(f"{outcome} (exit {code}){took}: {report.get('error') or ''}".rstrip(": "))
    else:
        out.append(
            f"{'dry run' if dry else 'done'}: {outcome}{took}"
            + ("; run without --dry-run to apply" if dry and steps else "")
        )
    return "\n".join(out)


# ---------------------------------------------------------------- deployment progress


class TerminalProgress:
    """Progress lines on a terminal while a deployment rolls out, at most one every ``every_s`` (and always the
    last): ``deploying ecs-svc/123: IN_PROGRESS, running 1/2, pending 1, 1m 5s``. Whole lines, not a line
    redrawn in place: log lines share the terminal, and a redrawn line would be torn by them."""

    def __init__(self, stream: TextIO, *, every_s: float = 5.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.stream = stream
        self.every_s = every_s
        self._clock = clock
        self._last = float("-inf")

    def __call__(self, progress: Any) -> None:
        now = self._clock()
        if now - self._last < self.every_s and not getattr(progress, "final", False):
            return
        self._last = now
        self.stream.write(progress_text(progress) + "\n")
        self.stream.flush()


def progress_text(p: Any) -> str:
    return (
        f"deploying {p.deployment}: {p.rollout or p.status or '?'}, running {p.running}/{p.desired}, "
        f"pending {p.pending}, {_age(int(p.elapsed_s))}"
    )
