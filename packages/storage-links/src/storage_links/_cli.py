"""The `storage-links` command line: init, validate, status, unlink.

Arguments are parsed by hand rather than with argparse, and json, hashlib and the
migration modules are imported only on the paths that need them: `validate` and
a warm `init` must cost little more than starting Python (see bench/).
"""

from __future__ import annotations

import os
import sys

from storage_links._errors import ShareError, StorageLinksError, UsageError

HELP = """\
usage: storage-links [--root PATH] [--share PATH] [--json] COMMAND [OPTIONS]

Keep the packages' data directories on the file share through symlinks, as the
[tool.storage-links] tables of the workspace's pyproject.toml files declare.

commands:
  init      verify the share, create its directories, move data already in the
            local directories onto it, replace them by symlinks, validate; prints
            "✓ Symlink verified: <path on share> -> <target>" per link.
            Re-running it changes nothing. A run killed at any moment is finished
            by the next one; nothing is lost.
              --dry-run        print what would be done, change nothing
              --require-mount  fail unless the share is a mount point
              --break-lock     break the share's lock even if its owner may be alive
  validate  read-only: every link is a symlink to its target, which exists, is
            writable, and is a plain directory on the share (no symlink on the way
            from the share root); one line per problem, exit 0 only when all hold
  status    a table of every link and its state (always exit 0)
  unlink    turn each link back into a plain directory holding a copy of the
            share's data (the share keeps its copy)
              --dry-run        print what would be done, change nothing
              --break-lock     as for init

options:
  --root PATH    project root (default: PIPELINE_ROOT, else the installed workspace)
  --share PATH   share root (default: FILESHARE_ROOT, which the image sets to
                 /mnt/fileshare, a relative one from <root>; else <root>/local_fileshare);
                 an empty PATH is a usage error, an empty FILESHARE_ROOT means unset
  --json         print one JSON document on stdout, for success and errors alike
  -h, --help     show this help

conflicts: before changing anything, init lists every conflict and stops: a file
where a directory belongs (either side), a local symlink pointing elsewhere, a
symlink or special file inside the data (the share cannot hold symlinks, and
storage-links never follows one out of the tree), a mount point at or inside a
local data directory (it cannot become a link), a directory init would write
into or remove from that this user cannot write (or that is on a read-only mount),
a share that is missing, not a directory, read-only, (with --require-mount) not
a mount point, or that is, lies inside or holds a data directory (FILESHARE_ROOT=.,
say; then nothing else is checked). A name present
on both sides with different content is not a conflict: the share's version is
kept and the local one is saved beside it as <name>.local-conflict-<UTC time>.
A contract that names a path outside its package (or the share), a local directory
holding another declared one, two links on one share path, or the share path
.storage-links.lock is refused before anything is looked at (exit 5), naming the
pyproject.toml and the key (both, for two declarations).

lock: init and unlink hold <share>/.storage-links.lock (created with O_EXCL) while
they change anything, touching it every 30 s. A lock whose owner ran on this host
and is gone, that was not touched for 10 minutes, or that records no owner and is
older than 2 s, is stale: it is broken automatically with a warning naming its
owner and age. Any other lock fails with exit 4 naming its owner and age;
--break-lock breaks it anyway (only when you know its owner is dead).

exit codes: 0 ok, 1 file-system error, 2 validation failed, 3 conflicts,
4 lock held, 5 contract error, 6 share problem, 64 usage error, 130 / 143
stopped by Ctrl-C / SIGTERM (the lock is released; the next run finishes).
"""

COMMANDS = {
    "init": {"--dry-run", "--require-mount", "--break-lock"},
    "validate": set(),
    "status": set(),
    "unlink": {"--dry-run", "--break-lock"},
}
VALUED = {"--root", "--share"}
FLAGS = {"--json"}


def parse(argv: list[str]) -> tuple[str, dict[str, object]]:
    command = ""
    opts: dict[str, object] = {}
    args = iter(argv)
    for arg in args:
        if arg in ("-h", "--help"):
            return "help", opts
        name, eq, value = arg.partition("=")
        if name in VALUED:
            if not eq:
                value = next(args, "")
                if value.startswith("-"):
                    raise UsageError(f"{name} needs a path")
            if not value:  # not the current directory: --share= would put the share in the checkout
                raise UsageError(f"{name} needs a path")
            opts[name] = value
        elif arg.startswith("-"):
            if arg not in FLAGS and arg not in COMMANDS.get(command, ()):
                where = f" for {command}" if command else " (before the command)"
                raise UsageError(f"unknown option {arg}{where}; see storage-links --help")
            opts[arg] = True
        elif not command:
            if arg not in COMMANDS:
                raise UsageError(f"unknown command {arg!r}; choose one of {', '.join(COMMANDS)}")
            command = arg
        else:
            raise UsageError(f"unexpected argument {arg!r}")
    if not command:
        raise UsageError(f"no command given; choose one of {', '.join(COMMANDS)} (see --help)")
    return command, opts


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    as_json = "--json" in argv
    doc: dict[str, object] = {"command": None, "ok": True}
    try:
        command, opts = parse(argv)
        if command == "help":
            sys.stdout.write(HELP)
            return 0
        doc["command"] = command
        root, share = _locations(opts)
        doc["root"], doc["share"] = root, share
        _COMMAND_FUNCS[command](root, share, opts, doc, as_json)
        code = 0
    except StorageLinksError as exc:
        code = exc.exit_code
        doc["ok"] = False
        doc["error"] = {"type": type(exc).__name__, "exit_code": code, "message": str(exc), "problems": exc.lines}
        for line in exc.lines:
            print(f"storage-links: {line}", file=sys.stderr)
    except KeyboardInterrupt as exc:  # storage_links.Interrupted: Ctrl-C or SIGTERM while the lock was held
        code = getattr(exc, "exit_code", 130)
        doc["ok"] = False
        # A bare KeyboardInterrupt (Ctrl-C before the lock, while planning) is Python's own, for SIGINT.
        message = f"stopped by {str(exc) or 'SIGINT'}; nothing is lost, and the next {doc['command']} finishes the job"
        doc["error"] = {"type": type(exc).__name__, "exit_code": code, "message": message, "problems": [message]}
        print(f"storage-links: {message}", file=sys.stderr)
    except OSError as exc:
        # Unexpected I/O failure mid-way: every step before it was safe, and a re-run finishes the job.
        code = 1
        doc["ok"] = False
        message = f"{exc}; nothing is lost, re-run the command once the cause is fixed"
        doc["error"] = {"type": type(exc).__name__, "exit_code": code, "message": message, "problems": [message]}
        print(f"storage-links: {message}", file=sys.stderr)
    for line in doc.get("warnings", ()):
        print(f"storage-links: warning: {line}", file=sys.stderr)
    if as_json:
        import json

        sys.stdout.write(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
    return code


def _locations(opts: dict[str, object]) -> tuple[str, str]:
    from storage_links._declared import check_root, find_root, find_share

    if "--root" in opts:
        root = os.path.abspath(str(opts["--root"]))
        check_root(root, f"--root {opts['--root']}", "use --root")
    else:
        root = find_root()
    share = os.path.abspath(str(opts["--share"])) if "--share" in opts else find_share(root)
    return root, share


def _link_rows(declared: list, share: str) -> list[dict[str, str]]:
    from storage_links._check import inspect

    rows = []
    for link in declared:
        state, detail = inspect(link, share)
        target = os.path.join(share, link[3])
        rows.append({"link": link[3], "local": link[2], "target": target, "state": state, "detail": detail})
    return rows


def _verified(declared: list, share: str, doc: dict, as_json: bool) -> None:
    from storage_links._check import validate

    results = validate(declared, share)
    lines = [f"✓ Symlink verified: {link[3]} -> {os.path.join(share, link[3])}" for link, _, _ in results]
    doc["links"] = [
        {"link": link[3], "local": link[2], "target": os.path.join(share, link[3]), "state": state}
        for link, state, _ in results
    ]
    doc["verified"] = lines
    if not as_json:
        sys.stdout.write("".join(line + "\n" for line in lines))


def cmd_validate(root: str, share: str, opts: dict, doc: dict, as_json: bool) -> None:
    from storage_links._check import validate
    from storage_links._declared import declared_links
    from storage_links._errors import ValidationError

    declared = declared_links(root)
    try:
        validate(declared, share)
    except ValidationError:
        doc["links"] = _link_rows(declared, share)
        raise
    _verified(declared, share, doc, as_json)


def cmd_status(root: str, share: str, opts: dict, doc: dict, as_json: bool) -> None:
    from storage_links._declared import declared_links

    rows = _link_rows(declared_links(root), share)
    doc["links"] = rows
    if as_json:
        return
    header = {"link": "LINK", "local": "LOCAL", "target": "TARGET", "state": "STATE"}
    cols = list(header)
    widths = {c: max(len(r[c]) for r in [header, *rows]) for c in cols}
    for row in [header, *rows]:
        print("  ".join(row[c].ljust(widths[c]) for c in cols).rstrip())


def cmd_init(root: str, share: str, opts: dict, doc: dict, as_json: bool) -> None:
    from storage_links._declared import LOCK_NAME, declared_links
    from storage_links._plan import plan_init

    declared = declared_links(root)
    require_mount = bool(opts.get("--require-mount"))
    plan = plan_init(declared, share, require_mount=require_mount)
    _refuse(plan)
    if opts.get("--dry-run"):
        _dry_run(plan, doc, as_json, _describe_init)
        return
    if plan.changes:
        from storage_links._lock import ShareLock
        from storage_links._migrate import migrate_link
        from storage_links._runtime import stop_on_signals

        lock = ShareLock(share, "init", break_lock=bool(opts.get("--break-lock")))
        # SIGTERM (docker stop) during a migration: stop between steps, each safe, and release the
        # lock on the way out, or the next container (on another host) would wait for it to go stale.
        with stop_on_signals():
            try:
                lock.acquire()
                doc["warnings"] = lock.warnings
                plan = plan_init(declared, share, require_mount=require_mount)  # again, now that nobody else can act
                _refuse(plan)
                migrated = {}
                for lp in plan.links:
                    if lp.changes:
                        report = migrate_link(lp, lock)
                        migrated[lp.label] = report.as_dict()
                        _say_migrated(lp.label, report, as_json)
                doc["migrated"] = migrated
            finally:
                lock.release()
    elif os.path.lexists(os.path.join(share, LOCK_NAME)):
        from storage_links._lock import ShareLock

        lock = ShareLock(share, "init")
        lock.clear_if_stale()
        doc["warnings"] = lock.warnings
    _verified(declared, share, doc, as_json)


def _refuse(plan) -> None:
    from storage_links._errors import ConflictError

    if plan.share_problems:
        raise ShareError(plan.share_problems + [f"conflict: {c}" for c in plan.conflicts])
    if plan.conflicts:
        raise ConflictError(plan.conflicts)


def _say_migrated(label: str, report, as_json: bool) -> None:
    if as_json:
        return
    if report.moved or report.identical:
        print(
            f"storage-links: {label}: moved {report.moved} file(s), {report.moved_bytes} bytes, to the share; "
            f"{report.identical} already there with identical content",
            file=sys.stderr,
        )
    for kept, aside in report.kept_aside:
        print(
            f"storage-links: {label}: {kept} differs from the local file; kept the share's, "
            f"saved the local one as {aside}",
            file=sys.stderr,
        )


def _dry_run(plan, doc: dict, as_json: bool, describe) -> None:
    actions = [line for lp in plan.links for line in describe(lp)]
    doc["dry_run"] = True
    doc["actions"] = actions
    if not as_json:
        sys.stdout.write("".join(line + "\n" for line in actions) + "dry run: nothing changed\n")


def _describe_init(lp) -> list[str]:
    lines = [f"{lp.label}: would create directory {path} on the share" for path in lp.make_dirs]
    lines += [f"{lp.label}: would remove the leftover symlink {path}" for path in lp.leftovers]
    for source in lp.sources:
        lines.append(f"{lp.label}: would move the content of {source} to {lp.target}")
    if lp.files:
        lines.append(f"{lp.label}: {lp.files} file(s), {lp.bytes} bytes, to move or compare")
    if lp.both_sides:
        from storage_links._migrate import preview_merges

        identical, aside = preview_merges(lp)
        lines += [
            f"{lp.label}: {kept} differs from the local file {local}; would keep the share's and save the "
            f"local one as {saved}"
            for kept, local, saved in aside
        ]
        if identical:
            lines.append(
                f"{lp.label}: {identical} file(s) already on the share with identical content; would drop the "
                f"local cop{'y' if identical == 1 else 'ies'}"
            )
    if lp.state == "directory":
        lines.append(f"{lp.label}: would replace the directory {lp.local} by a symlink to {lp.target}")
    elif lp.state == "missing":
        lines.append(f"{lp.label}: would create the symlink {lp.local} -> {lp.target}")
    if not lines:
        lines.append(f"{lp.label}: nothing to do ({lp.local} -> {lp.target})")
    return lines


def _describe_unlink(lp) -> list[str]:
    if lp.state == "directory":
        return [f"{lp.label}: nothing to do ({lp.local} is already a plain directory)"]
    return [
        f"{lp.label}: would copy {lp.files} file(s), {lp.bytes} bytes, from {lp.target} into a new plain "
        f"directory {lp.local} (the share keeps its copy)"
    ]


def cmd_unlink(root: str, share: str, opts: dict, doc: dict, as_json: bool) -> None:
    from storage_links._declared import declared_links
    from storage_links._plan import check_share, plan_unlink

    declared = declared_links(root)
    problems = check_share(share, require_mount=False)
    if problems and not os.path.isdir(share):
        raise ShareError(problems)
    plan = plan_unlink(declared, share)
    _refuse(plan)
    if opts.get("--dry-run"):
        _dry_run(plan, doc, as_json, _describe_unlink)
        return
    from storage_links._lock import ShareLock
    from storage_links._runtime import stop_on_signals
    from storage_links._unlink import unlink_link

    results = [{"link": lp.label, "local": lp.local, "copied_files": 0, "state": "directory"} for lp in plan.links]
    doc["links"] = results
    if not any(lp.state != "directory" or lp.leftovers for lp in plan.links):
        return  # already plain directories: a re-run changes nothing
    lock = ShareLock(share, "unlink", break_lock=bool(opts.get("--break-lock")))
    with stop_on_signals():  # as init: a stop releases the lock
        try:
            lock.acquire()
            doc["warnings"] = lock.warnings
            for lp, result in zip(plan.links, results, strict=True):
                was_linked = lp.state != "directory"
                result["copied_files"] = unlink_link(lp, lock)
                if was_linked and not as_json:
                    print(
                        f"✓ Unlinked: {lp.label} -> {lp.local} "
                        f"({result['copied_files']} file(s) copied back; the share keeps its copy)"
                    )
        finally:
            lock.release()


_COMMAND_FUNCS = {"init": cmd_init, "validate": cmd_validate, "status": cmd_status, "unlink": cmd_unlink}
