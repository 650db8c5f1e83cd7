"""An app root laid out like the container image, built from the Dockerfile's own COPY lines.

Reading the Dockerfile (rather than listing files here) keeps the test and the image from
drifting apart: a file the image lacks is missing here too.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
from pathlib import Path

from tests._pipeline import clean_env

REPO = Path(__file__).resolve().parents[1]
DOCKERFILE = REPO / "docker" / "Dockerfile"
IMAGE_APP = "/app"


def final_stage_copies(dockerfile: Path = DOCKERFILE) -> list[tuple[list[str], str]]:
    """(sources, destination) of every COPY from the build context in the last stage."""
    copies, workdir = [], "/"
    for line in _final_stage(dockerfile):
        keyword, _, rest = line.partition(" ")
        if keyword.upper() == "WORKDIR":
            workdir = rest.strip()
        if keyword.upper() != "COPY":
            continue
        args = shlex.split(rest)
        if any(a.startswith("--from") for a in args):
            continue
        args = [a for a in args if not a.startswith("--")]
        *sources, dest = args
        copies.append((sources, dest if dest.startswith("/") else f"{workdir.rstrip('/')}/{dest}"))
    return copies


def build_app_root(app_root: Path) -> Path:
    """Copy what the image's final stage copies into `app_root` (standing in for /app)."""
    for sources, dest in final_stage_copies():
        if not dest.startswith(IMAGE_APP):
            raise ValueError(f"{DOCKERFILE}: COPY outside {IMAGE_APP}: {dest}")
        target = app_root / dest[len(IMAGE_APP) :].lstrip("/")
        for source in sources:
            src = REPO / source
            if src.is_dir():
                shutil.copytree(src, target, dirs_exist_ok=True)
            elif dest.endswith("/") or len(sources) > 1:
                target.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, target / src.name)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, target)
    return app_root


def image_user(dockerfile: Path = DOCKERFILE) -> tuple[int, int]:
    """The final stage's USER, as uid and gid."""
    users = [line.partition(" ")[2].strip() for line in _final_stage(dockerfile) if line.upper().startswith("USER ")]
    uid, _, gid = users[-1].partition(":")
    return int(uid), int(gid or uid)


def app_owned(app_root: Path, dockerfile: Path = DOCKERFILE) -> list[Path]:
    """The folders the final stage gives the app user (its `RUN chown app:app ...`), under `app_root`."""
    owned = []
    for line in _final_stage(dockerfile):
        keyword, _, rest = line.partition(" ")
        args = shlex.split(rest)
        if keyword.upper() == "RUN" and args[:2] == ["chown", "app:app"]:
            for pattern in args[2:]:
                rel = pattern.removeprefix(IMAGE_APP).lstrip("/")
                owned += sorted(app_root.glob(rel)) if rel else [app_root]
    return owned


def image_entrypoint(app_root: Path, dockerfile: Path = DOCKERFILE) -> list[str]:
    """The final stage's ENTRYPOINT (exec form), its /app paths pointed at `app_root`."""
    entrypoints = [line for line in _final_stage(dockerfile) if line.upper().startswith("ENTRYPOINT ")]
    command = json.loads(entrypoints[-1].partition(" ")[2])
    return [str(app_root / arg[len(IMAGE_APP) + 1 :]) if arg.startswith(f"{IMAGE_APP}/") else arg for arg in command]


def image_env(app_root: Path, share: Path, **extra: str) -> dict[str, str]:
    """The environment the Dockerfile sets, pointed at the temporary app root and share."""
    venv_bin = REPO / ".venv" / "bin"
    env = clean_env(app_root, share)
    env.update(
        PATH=f"{venv_bin}{os.pathsep}{env.get('PATH', '')}",
        BOOTSTRAP="0",
        VENV=str(REPO / ".venv"),
        STORAGE_LINKS_REQUIRE_MOUNT="0",
        PYTHONDONTWRITEBYTECODE="1",
    )
    env.update(extra)
    return env


def _final_stage(dockerfile: Path) -> list[str]:
    """The instructions of the last stage (the image that runs), from its FROM on."""
    lines = _logical_lines(dockerfile.read_text())
    last_from = max(i for i, line in enumerate(lines) if line.upper().startswith("FROM "))
    return lines[last_from:]


def _logical_lines(text: str) -> list[str]:
    joined = text.replace("\\\n", " ")
    return [line.strip() for line in joined.splitlines() if line.strip() and not line.lstrip().startswith("#")]
