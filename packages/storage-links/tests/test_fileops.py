"""The careful file operations, including how they behave where a network share misbehaves."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
from storage_links import _busy, _fileops
from storage_links._busy import retry_busy
from storage_links._fileops import CopyError, copy_verified, exchange, partial_name


def test_copy_verified_copies_bytes_mode_and_times(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(os.urandom(3 * 1024 * 1024 + 7))
    os.chmod(src, 0o640)
    os.utime(src, ns=(1_000_000_000, 2_000_000_000))
    dst = tmp_path / "share" / "dst.bin"
    dst.parent.mkdir()
    assert copy_verified(str(src), str(dst), partial_name(str(dst))) == src.stat().st_size
    assert dst.read_bytes() == src.read_bytes()
    assert dst.stat().st_mode & 0o777 == 0o640 and dst.stat().st_mtime_ns == 2_000_000_000
    assert sorted(p.name for p in dst.parent.iterdir()) == ["dst.bin"]
    assert src.exists()  # removing the source is the caller's step


def test_the_staging_name_fits_any_legal_name_and_is_one_per_name(tmp_path):
    longest, other = str(tmp_path / ("x" * 255)), str(tmp_path / ("x" * 254 + "y"))
    staging = partial_name(longest)
    assert os.path.dirname(staging) == str(tmp_path)
    assert len(os.fsencode(os.path.basename(staging))) <= 64
    assert staging == partial_name(longest) != partial_name(other)  # a retried copy reuses its own
    assert staging.endswith(".storage-links-partial")
    src = tmp_path / "src"
    src.write_bytes(b"payload")
    assert copy_verified(str(src), longest, staging) == 7
    assert Path(longest).read_bytes() == b"payload"


def test_copy_never_overwrites_an_existing_target(tmp_path):
    src, dst = tmp_path / "a", tmp_path / "b"
    src.write_text("new")
    dst.write_text("precious")
    with pytest.raises(CopyError, match="nothing overwritten"):
        copy_verified(str(src), str(dst), partial_name(str(dst)))
    assert dst.read_text() == "precious"


def test_a_copy_that_reads_back_wrong_is_refused(tmp_path):
    src, dst = tmp_path / "a", tmp_path / "b"
    src.write_text("data")
    item = _fileops.stage(str(src), str(dst), partial_name(str(dst)))
    Path(item.staging).write_text("dada")  # what a flaky share might hand back: same size, other bytes
    with pytest.raises(CopyError, match="read back differs"):
        _fileops.commit(item)
    assert not dst.exists() and not os.path.exists(partial_name(str(dst)))
    assert src.read_text() == "data"


def test_same_content_compares_every_byte(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    data = os.urandom(3 * (1 << 20) + 5)  # past several read chunks
    a.write_bytes(data)
    b.write_bytes(data)
    assert _fileops.same_content(str(a), str(b))
    b.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))  # the last byte differs
    assert not _fileops.same_content(str(a), str(b))


def test_a_symlink_is_never_followed_as_a_source(tmp_path):
    (tmp_path / "secret").write_text("outside")
    (tmp_path / "link").symlink_to(tmp_path / "secret")
    with pytest.raises(OSError) as info:
        copy_verified(str(tmp_path / "link"), str(tmp_path / "dst"), str(tmp_path / ".dst.partial"))
    assert info.value.errno == errno.ELOOP


# SMB answers a busy file with EACCES; smbnetfs (the tests' share) passes on EBUSY.
@pytest.mark.parametrize("busy", [PermissionError(errno.EACCES, "busy"), OSError(errno.EBUSY, "busy")])
def test_busy_errors_are_retried(monkeypatch, busy):
    monkeypatch.setattr(_busy, "_DELAYS", (0, 0, 0))
    calls = []

    def flaky(value):
        calls.append(value)
        if len(calls) < 3:
            raise busy
        return value

    assert retry_busy(flaky, "ok") == "ok" and len(calls) == 3
    calls.clear()
    with pytest.raises(type(busy)):
        retry_busy(lambda: (calls.append(1), (_ for _ in ()).throw(busy))[1])
    assert len(calls) == 4  # three retries, then the last try's error


def test_other_errors_are_not_retried(monkeypatch):
    calls = []
    with pytest.raises(FileNotFoundError):
        retry_busy(lambda: (calls.append(1), (_ for _ in ()).throw(FileNotFoundError("gone")))[1])
    assert len(calls) == 1


def test_fsync_unsupported_by_the_file_system_is_tolerated(tmp_path, monkeypatch):
    def no_fsync(fd):
        raise OSError(errno.EINVAL, "Invalid argument")

    monkeypatch.setattr(os, "fsync", no_fsync)
    src, dst = tmp_path / "a", tmp_path / "b"
    src.write_text("data")
    copy_verified(str(src), str(dst), partial_name(str(dst)))
    assert dst.read_text() == "data"


def test_other_fsync_errors_stop_the_copy(tmp_path, monkeypatch):
    def io_error(fd):
        raise OSError(errno.EIO, "I/O error")

    monkeypatch.setattr(os, "fsync", io_error)
    src, dst = tmp_path / "a", tmp_path / "b"
    src.write_text("data")
    with pytest.raises(OSError, match="I/O error"):
        copy_verified(str(src), str(dst), partial_name(str(dst)))
    assert not dst.exists()


def test_exchange_swaps_a_directory_and_a_symlink(tmp_path):
    (tmp_path / "dir").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "elsewhere")
    if not exchange(str(tmp_path / "link"), str(tmp_path / "dir")):
        pytest.skip("renameat2(RENAME_EXCHANGE) is not available here")
    assert (tmp_path / "dir").is_symlink() and (tmp_path / "link").is_dir()
