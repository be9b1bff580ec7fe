"""The broker's own files survive `kiosk-hq enroll` / `broker-user` edits.

mosquitto reads its password file as user `mosquitto`; HQ edits it as root. A rewrite
that left the file owned by root with mode 0600 would make the next reload refuse
every login, devices and HQ alike.
"""

import os
import stat

import pytest

from sync.hq import credentials

NOBODY = 65534


@pytest.mark.skipif(os.geteuid() != 0, reason="changing a file's owner needs root")
def test_password_and_acl_files_keep_owner_group_and_mode(tmp_path):
    passwd, acl = tmp_path / "passwd", tmp_path / "acl"
    passwd.write_text("hq:$7$old\n")
    acl.write_text("user hq\ntopic readwrite kiosk/#\n")
    for path, mode in ((passwd, 0o640), (acl, 0o644)):
        os.chown(path, NOBODY, NOBODY)
        path.chmod(mode)
    credentials.upsert_password(passwd, "k1", "secret")
    credentials.upsert_acl(acl, "k1", credentials.device_acl("cafe", "s1", "k1"))
    for path, mode in ((passwd, 0o640), (acl, 0o644)):
        st = path.stat()
        assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (NOBODY, NOBODY, mode)
    assert passwd.read_text().startswith("hq:$7$old\nk1:$7$")
    assert "user k1" in acl.read_text()


def test_a_new_password_file_is_private(tmp_path):
    credentials.upsert_password(tmp_path / "passwd", "k1", "secret")
    assert stat.S_IMODE((tmp_path / "passwd").stat().st_mode) == 0o600
