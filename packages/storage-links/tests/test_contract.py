"""The contracts: parsing, errors that name the file and key, data_dir, the start-up cache."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from storage_links import ContractError, data_dir, links, logs_dir, project_root, share_root
from storage_links.testing import scaffold_project

PACKAGES = Path(__file__).resolve().parents[2]


def write_alpha(env, body: str) -> Path:
    path = env.root / "packages" / "alpha" / "pyproject.toml"
    path.write_text('[project]\nname = "alpha"\nversion = "0"\n\n' + body)
    return path


def test_links_and_data_dir_resolve_against_the_project_root(env, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # never the current directory
    assert [(lk.package, lk.name, lk.share_rel) for lk in links()] == [
        ("", "logs", "logs"),
        ("alpha", "data", "alpha/data"),
        ("alpha", "cache", "alpha/cache"),
    ]
    assert data_dir("alpha", "data") == env.root / "packages" / "alpha" / "data"
    assert links()[1].subdirs == ("input", "output")
    assert links()[1].target(env.share) == env.share / "alpha" / "data"
    assert logs_dir() == env.root / "logs"
    assert project_root() == env.root
    assert share_root() == env.share


def test_undeclared_data_dir_names_what_is_declared(env):
    with pytest.raises(ContractError, match=r"alpha:nope is not declared.*alpha:data"):
        data_dir("alpha", "nope")


T = "[tool.storage-links]\n"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (T + 'links = { "../escape" = "alpha/x" }\n', r"links\.\.\./escape: '\.\./escape' must be a single"),
        (T + 'links = { "a/b" = "alpha/x" }\n', r"links\.a/b: 'a/b' must be a single directory name"),
        (T + 'links = { "x" = "../outside" }\n', r"links\.x: '\.\./outside' must be a relative path"),
        (T + 'links = { "x" = "/abs" }\n', r"links\.x: '/abs' must be a relative path"),
        (T + 'links = { "x" = 3 }\n', r"links\.x: share path must be a string"),
        (T + 'links = ["x"]\n', r"tool\.storage-links\.links must be a table"),
        (T + 'links = { "x" = "alpha/x" }\nextra = 1\n', r"tool\.storage-links\.extra: unknown key"),
        (T + 'links = { "x" = "alpha/x" }\nsubdirs = { "y" = ["a"] }\n', r"subdirs\.y: not a declared"),
        (T + 'links = { "x" = "alpha/x" }\nsubdirs = { "x" = ["../a"] }\n', r"subdirs\.x: '\.\./a'"),
        (T + 'links = { "x" = "alpha/x" }\nsubdirs = { "x" = "a" }\n', r"subdirs\.x: must be a list"),
        (T + 'links = { "x" = "logs/inner" }\n', r"links\.x: share path 'logs/inner' overlaps 'logs'"),
        (
            T + 'links = { "x" = ".storage-links.lock" }\n',
            r"links\.x: '\.storage-links\.lock' is the name of the share's lock",
        ),
        (T + 'links = { "x" = "./.storage-links.lock" }\n', r"links\.x: '\./\.storage-links\.lock' is the name of"),
        (T + 'links = { "x" = "a/x" }\nsubdirs = { "x" = [".storage-links.lock"] }\n', r"subdirs\.x: '\.storage-links"),
        ("[tool.storage-links\n", r"invalid TOML"),
    ],
)
def test_bad_contracts_name_file_and_key(env, body, message):
    path = write_alpha(env, body)
    with pytest.raises(ContractError, match=message) as info:
        links()
    assert str(path) in str(info.value)


def test_two_packages_claiming_one_share_path(env):
    beta = env.root / "packages" / "beta"
    beta.mkdir()
    (beta / "pyproject.toml").write_text('[project]\nname="beta"\n' + T + 'links = { "d" = "alpha/data" }\n')
    with pytest.raises(ContractError, match=r"beta/pyproject.toml: tool.storage-links.links.d: share path 'alpha/data"):
        links()


def test_a_local_directory_holding_another_declared_one(env, cli, snapshot):
    # "packages" = "pk" in the root's links moved the whole source tree, other packages' data dirs too.
    root_py = env.root / "pyproject.toml"
    root_py.write_text(root_py.read_text().replace('"logs" = "logs"', '"logs" = "logs", "packages" = "pk"'))
    before = snapshot(env.root, env.share)
    result = cli("init")
    assert result.code == 5
    assert result.err == (
        f"storage-links: {root_py}: tool.storage-links.links.packages: local directory {env.root / 'packages'} "
        f"holds {env.local()}, declared in {env.root / 'packages' / 'alpha' / 'pyproject.toml'} "
        f"(tool.storage-links.links.data)\n"
    )
    assert cli("validate").code == 5
    assert snapshot(env.root, env.share) == before


def test_pipeline_root_without_pyproject(monkeypatch, tmp_path):
    monkeypatch.setenv("PIPELINE_ROOT", str(tmp_path))
    with pytest.raises(ContractError, match=f"PIPELINE_ROOT={tmp_path}: no pyproject.toml"):
        project_root()


def test_a_root_naming_a_member_package_says_which_root_to_give(env, cli, monkeypatch, tmp_path):
    # It said "packages/alpha/pyproject.toml: tool.hatch.envs.default.workspace.members must be a list of globs".
    member = env.root / "packages" / "alpha"
    monkeypatch.chdir(env.root)
    monkeypatch.setenv("PIPELINE_ROOT", "packages/alpha")
    said = f"{member} is the member package alpha of the workspace at {env.root}, not the project root"
    with pytest.raises(ContractError) as raised:
        project_root()
    assert str(raised.value) == f"PIPELINE_ROOT=packages/alpha: {said}; set PIPELINE_ROOT to {env.root}"
    result = cli("validate")
    assert (result.code, result.err) == (5, f"storage-links: {raised.value}\n")
    monkeypatch.setenv("PIPELINE_ROOT", str(member / "src"))  # no pyproject.toml, but inside the workspace
    with pytest.raises(ContractError) as raised:
        project_root()
    assert str(raised.value) == (
        f"PIPELINE_ROOT={member / 'src'}: no pyproject.toml there; {member / 'src'} is inside the workspace at "
        f"{env.root}, not the project root; set PIPELINE_ROOT to {env.root}"
    )
    monkeypatch.delenv("PIPELINE_ROOT")
    result = cli("--root", "packages/alpha", "status")
    assert (result.code, result.err) == (5, f"storage-links: --root packages/alpha: {said}; use --root {env.root}\n")
    lone = tmp_path / "lone"  # a pyproject.toml in no workspace at all
    lone.mkdir()
    (lone / "pyproject.toml").write_text('[project]\nname = "lone"\n')
    monkeypatch.setenv("PIPELINE_ROOT", str(lone))
    with pytest.raises(ContractError, match=r"pyproject.toml declares no workspace .*; set PIPELINE_ROOT to the"):
        project_root()


def test_root_found_from_the_installed_package_without_pipeline_root(monkeypatch):
    # Tests run from a checkout (editable or tox's install beneath it): the workspace root is above.
    root = project_root()
    assert (root / "packages" / "storage-links" / "pyproject.toml").is_file()
    assert any(lk.name == "logs" and lk.package == "" for lk in links())


def test_members_must_be_a_list(env):
    (env.root / "pyproject.toml").write_text('[tool.hatch.envs.default]\nworkspace.members = "packages/*"\n')
    with pytest.raises(ContractError, match=r"pyproject.toml: tool.hatch.envs.default.workspace.members must be"):
        links()


def test_share_root_defaults_to_local_fileshare(env, monkeypatch):
    monkeypatch.delenv("FILESHARE_ROOT")
    assert share_root() == env.root / "local_fileshare"  # whether or not /mnt/fileshare exists here


def test_a_relative_share_root_is_taken_from_the_project_root(env, monkeypatch, tmp_path):
    monkeypatch.setenv("FILESHARE_ROOT", "../shares/./pipeline")
    for cwd in (env.root, env.root / "packages", tmp_path):
        monkeypatch.chdir(cwd)
        assert share_root() == env.root.parent / "shares" / "pipeline"


def test_cache_sees_an_edited_contract_and_a_new_member(env):
    assert len(links()) == 3
    assert list((Path(os.environ["XDG_CACHE_HOME"]) / "storage-links").glob("contracts-*.marshal"))
    write_alpha(env, '[tool.storage-links]\nlinks = { "only" = "alpha/only" }\n')
    assert [lk.name for lk in links()] == ["logs", "only"]
    beta = env.root / "packages" / "beta"
    beta.mkdir()
    assert [lk.name for lk in links()] == ["logs", "only"]
    (beta / "pyproject.toml").write_text('[project]\nname="beta"\n[tool.storage-links]\nlinks = { "b" = "beta/b" }\n')
    assert [lk.name for lk in links()] == ["logs", "only", "b"]


def test_corrupt_cache_is_ignored(env):
    links()
    for cached in (Path(os.environ["XDG_CACHE_HOME"]) / "storage-links").glob("*.marshal"):
        cached.write_bytes(b"garbage")
    assert len(links()) == 3


def test_scaffold_project_copies_the_real_contracts(tmp_path, monkeypatch):
    root = scaffold_project(tmp_path / "p", [PACKAGES / "scraping", PACKAGES / "forecasting"])
    monkeypatch.setenv("PIPELINE_ROOT", str(root))
    assert data_dir("scraping", "scraped_data") == root / "packages" / "scraping" / "scraped_data"
    forecasting = [lk for lk in links() if lk.package == "forecasting"]
    assert forecasting and all(lk.local.parent == root / "packages" / "forecasting" for lk in forecasting)
