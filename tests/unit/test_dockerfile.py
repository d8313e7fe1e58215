"""The Dockerfile, read as text (no Docker engine here): multi-stage, non-root, the exact entrypoint, hashed pins.

``scripts/lint-infra.sh`` runs hadolint on it when installed; this test checks what the project promises.
"""

from __future__ import annotations

import fnmatch
import json
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
LOCK = ROOT / "requirements.lock"
ENTRYPOINT = ["rotator", "rotate", "--log-json"]
RUNTIME_DEPENDENCIES = {
    "boto3", "botocore", "s3transfer", "jmespath", "python-dateutil", "six", "urllib3", "pymysql", "psycopg",
    "psycopg-binary", "typing-extensions", "jinja2", "markupsafe", "click", "tenacity", "structlog",
    "python-dotenv",
}  # fmt: skip


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]


def instructions(text: str) -> list[tuple[str, str]]:
    """(KEYWORD, arguments) per instruction, with continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        keyword, _, args = line.partition(" ")
        out.append((keyword.upper(), args.strip()))
    return out


def stages() -> tuple[dict[str, str], list[Stage]]:
    args: dict[str, str] = {}
    result: list[Stage] = []
    for keyword, rest in instructions(DOCKERFILE.read_text()):
        if keyword == "ARG" and not result:
            name, _, default = rest.partition("=")
            args[name] = default
        elif keyword == "FROM":
            parts = rest.split()
            base = parts[0]
            for name, value in args.items():
                base = base.replace("${" + name + "}", value)
            name = parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else None
            result.append(Stage(base, name))
        else:
            result[-1].instructions.append((keyword, rest))
    return args, result


def test_multi_stage_on_pinned_python_slim() -> None:
    _, all_stages = stages()
    assert len(all_stages) >= 2
    for stage in all_stages:
        assert stage.base == "python:3.11-slim" or stage.base.startswith("python:3.11-slim@sha256:"), stage.base
    build, runtime = all_stages[0], all_stages[-1]
    assert build.name == "build"
    assert any(c.startswith("--from=build /opt/venv ") for c in runtime.all("COPY")), runtime.all("COPY")
    # The runtime stage installs nothing: no pip, no compiler, only what the build stage made.
    assert not any("pip " in r or "apt-get" in r for r in runtime.all("RUN"))


def test_runs_as_non_root_user() -> None:
    runtime = stages()[1][-1]
    users = runtime.all("USER")
    assert users, "the runtime stage must set USER"
    user = users[-1].split(":")[0]
    assert user not in ("0", "root")
    assert user == "10001"


def test_exact_entrypoint() -> None:
    runtime = stages()[1][-1]
    (entrypoint,) = runtime.all("ENTRYPOINT")
    assert json.loads(entrypoint) == ENTRYPOINT
    assert not runtime.all("CMD")


def test_venv_built_from_hashed_lock() -> None:
    build = stages()[1][0]
    runs = " ".join(build.all("RUN"))
    assert "--require-hashes" in runs and "-r requirements.lock" in runs
    assert "--only-binary=:all:" in runs


def lock_entries() -> dict[str, tuple[Version, int]]:
    entries: dict[str, tuple[Version, int]] = {}
    current = ""
    for line in LOCK.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("--hash=sha256:"):
            version, hashes = entries[current]
            entries[current] = (version, hashes + 1)
            continue
        requirement = line.removesuffix("\\").strip()
        name, _, version = requirement.partition("==")
        assert version, f"{requirement} is not pinned with =="
        current = canonicalize_name(name)
        entries[current] = (Version(version), 0)
    return entries


def test_lock_pins_exactly_the_runtime_dependencies_with_hashes() -> None:
    entries = lock_entries()
    assert set(entries) == RUNTIME_DEPENDENCIES
    for name, (_, hashes) in entries.items():
        assert hashes >= 1, f"{name} has no --hash"
    # Platform wheels carry one hash per architecture (x86_64 and aarch64).
    assert entries["psycopg-binary"][1] >= 2 and entries["markupsafe"][1] >= 2


def test_lock_satisfies_pyproject_dependencies() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    entries = lock_entries()
    for spec in project["dependencies"]:
        requirement = Requirement(spec)
        name = canonicalize_name(requirement.name)
        assert name in entries, f"{spec} is missing from requirements.lock"
        assert entries[name][0] in requirement.specifier, f"requirements.lock pins {name} outside {spec}"
        if "binary" in requirement.extras:
            assert canonicalize_name(f"{requirement.name}-binary") in entries


def test_copied_sources_exist_and_are_in_the_build_context() -> None:
    patterns = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()]
    patterns = [p for p in patterns if p and not p.startswith("#")]

    def included(path: str) -> bool:
        keep = True
        for pattern in patterns:
            negated = pattern.startswith("!")
            bare = pattern.removeprefix("!").rstrip("/")
            if fnmatch.fnmatch(path, bare) or path.startswith(bare + "/"):
                keep = negated
        return keep

    for stage in stages()[1]:
        for copy in stage.all("COPY"):
            parts = copy.split()
            if parts[0].startswith("--from="):
                continue
            for source in parts[:-1]:
                if source.endswith("*"):  # optional file (README.md*)
                    continue
                assert (ROOT / source).exists(), f"COPY {source}: no such file in the build context"
                assert included(source.rstrip("/")), f"COPY {source}: excluded by .dockerignore"


def test_entrypoint_command_exists() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["scripts"]["rotator"] == "rotator.cli:main"
    script = Path(sys.executable).parent / "rotator"
    assert script.exists(), f"{script}: install the project (pip install -e '.[dev]')"
    result = subprocess.run([str(script), *ENTRYPOINT[1:], "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "--log-json" in result.stdout
    assert metadata.version("rotator")


def test_templates_come_from_the_package_not_a_hand_copy() -> None:
    """The wheel carries templates/ (pyproject.toml's package-dir), so the build stage copies it in before the
    wheel is built and the runtime stage has no copy of its own: /app/templates is a link to the package's."""
    build, runtime = stages()[1][0], stages()[1][-1]
    wheel_at = next(i for i, (kw, args) in enumerate(build.instructions) if kw == "RUN" and "pip wheel" in args)
    templates_at = next(
        i for i, (kw, args) in enumerate(build.instructions) if kw == "COPY" and args.split()[0] == "templates/"
    )
    assert templates_at < wheel_at and build.instructions[templates_at] == ("COPY", "templates/ templates/")
    assert not any("templates" in c for c in runtime.all("COPY")), runtime.all("COPY")
    link = " ".join(runtime.all("RUN"))
    assert "templates_builtin" in link and 'ln -s "$builtin" /app/templates' in link
