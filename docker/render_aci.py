"""Render docker/aci.yaml from the environment and check it before `az container create` sees it.

Usage: render_aci.py OUTPUT [--mask-secrets]
Secrets (keys, passwords) are only ever written to OUTPUT, which the caller keeps private
and deletes; with --mask-secrets they are replaced by '***' (DRY_RUN).
"""

from __future__ import annotations

import os
import re
import string
import sys
from pathlib import Path

import yaml

TEMPLATE = Path(__file__).with_name("aci.yaml")
SETTINGS = ("ACI_NAME", "AZURE_LOCATION", "REGISTRY", "IMAGE_TAG", "AZURE_STORAGE_ACCOUNT",
            "AZURE_STORAGE_CONTAINER", "AZURE_FILE_SHARE", "REGISTRY_USERNAME")  # fmt: skip
SECRETS = ("FRED_API_KEY", "AZURE_STORAGE_KEY", "REGISTRY_PASSWORD")
SECRET_FIELDS = {"FRED_API_KEY", "AZURE_STORAGE_KEY"}
# deploy.sh's `az container create` needs it, not the spec: checked with the rest before anything is built.
DEPLOY_ONLY = ("AZURE_RESOURCE_GROUP",)
# Optional: a stage's settings file on the share, passed to the container only when set.
STAGE_SETTINGS = ("SCRAPING_CONFIG", "MODELLING_CONFIG", "FORECASTING_CONFIG")
PLAIN = re.compile(r"[A-Za-z0-9._:/@-]+")


class SpecError(Exception):
    pass


def render(env: dict[str, str], mask_secrets: bool) -> str:
    required = SETTINGS + DEPLOY_ONLY + SECRETS
    missing = [name for name in required if not env.get(name) and not (mask_secrets and name in SECRETS)]
    if missing:
        raise SpecError(f"{TEMPLATE}: missing environment variable(s): {', '.join(missing)}")
    for name in SETTINGS:
        if not PLAIN.fullmatch(env[name]):
            raise SpecError(f"{name}={env[name]!r}: only letters, digits and . _ : / @ - are allowed")
    stage_settings = [name for name in STAGE_SETTINGS if env.get(name)]
    for name in stage_settings:
        # Stages run from /app/packages: a relative path would name a file in the image, not on the share.
        if not env[name].startswith("/") or not env[name].isprintable():
            raise SpecError(f"{name}={env[name]!r}: must be an absolute path, e.g. /mnt/fileshare/config/...")
    values = {name: env[name] for name in SETTINGS}
    # Entries appended to the container's environmentVariables list, at the template's indentation;
    # quoted, so that any path stays a YAML string.
    quoted = {name: yaml.safe_dump(env[name], default_style='"').strip() for name in stage_settings}
    values["STAGE_SETTINGS"] = "".join(
        f"\n          - name: {name}\n            value: {value}" for name, value in quoted.items()
    )
    # Secrets may hold any character: they fill whole fields, so quote them as YAML strings.
    values |= {
        name: yaml.safe_dump("***" if mask_secrets else env[name], default_style='"').strip() for name in SECRETS
    }
    try:
        return string.Template(TEMPLATE.read_text()).substitute(values)
    except (KeyError, ValueError) as exc:
        raise SpecError(f"{TEMPLATE}: unknown placeholder {exc}") from None


def check(text: str) -> None:
    spec = yaml.safe_load(text)
    props = spec["properties"]
    (container,) = props["containers"]
    env_vars = {e["name"]: e for e in container["properties"]["environmentVariables"]}
    for name in SECRET_FIELDS:
        if "secureValue" not in env_vars.get(name, {}):
            raise SpecError(f"{TEMPLATE}: {name} must be passed as a secureValue")
    mounts = {m["name"]: m["mountPath"] for m in container["properties"]["volumeMounts"]}
    volumes = {v["name"]: v for v in props["volumes"]}
    if mounts.get("fileshare") != "/mnt/fileshare" or "azureFile" not in volumes.get("fileshare", {}):
        raise SpecError(f"{TEMPLATE}: the azureFile volume 'fileshare' must be mounted at /mnt/fileshare")
    if spec["type"] != "Microsoft.ContainerInstance/containerGroups" or props["osType"] != "Linux":
        raise SpecError(f"{TEMPLATE}: not a Linux container group spec")


def main(argv: list[str]) -> int:
    if len(argv) not in (1, 2) or (len(argv) == 2 and argv[1] != "--mask-secrets"):
        print(__doc__, file=sys.stderr)
        return 2
    try:
        text = render(dict(os.environ), mask_secrets=len(argv) == 2)
        check(text)
    except SpecError as exc:
        print(f"render_aci: {exc}", file=sys.stderr)
        return 1
    except (KeyError, TypeError, ValueError, yaml.YAMLError) as exc:
        print(f"render_aci: {TEMPLATE}: malformed spec ({type(exc).__name__}: {exc})", file=sys.stderr)
        return 1
    out = Path(argv[0])
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
