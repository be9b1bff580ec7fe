"""Code lists through ``kiosk-hq serve``: an owner uploads a bundle signed offline with
``kiosk-hq sign``, an integration posts one (or, when the operator opted in, plain codes
as JSON or CSV that HQ signs), HQ keeps and publishes it, and the real device agent
downloads it from the real TLS broker and reports its version in its heartbeat. Both
database engines; the server is its own process."""

import base64
import json
import re
import subprocess
import sys
import tarfile
import threading
import urllib.error
import urllib.request
import uuid
from contextlib import contextmanager
from http import client
from pathlib import Path

import test_hq_serve as base
from test_hq_serve import Http, hq, login

from kiosk import config, context
from kiosk.core import importer, keys
from kiosk.core.bundle import DirSource
from sync.agent import Agent
from sync.hq.db import HqDb
from sync.testing import (
    SALT,
    Broker,
    free_port,
    hq_settings,
    make_bundle,
    make_signing_key,
    wait_until,
    write_device_config,
)

CODES = ["CODE-0001", "CODE-0002", "CODE-0003"]
signing = base.signing  # the same fixture (db_url and pg: conftest.py)


@contextmanager
def serve_with_lists(tmp_path, db_url, signing, *extra):
    """Broker, device k1 on list v1 (made by make_bundle) with its agent running, and
    ``kiosk-hq serve`` trusting hq1, keeping lists in tmp_path/bundles, 1 MB uploads."""
    with Broker(tmp_path / "broker") as broker:
        program = f"p{uuid.uuid4().hex[:8]}"
        login_ = hq_settings(broker)
        password = broker.add_device(program, "s1", "k1")
        cfg = write_device_config(tmp_path / "k1", broker, device="k1", store="s1", program=program,
                                  trust={"hq1": signing[1]}, password_file=password)
        v1 = make_bundle(tmp_path / "b1", signing[0], key_id="hq1", program=program, version=1,
                         codes=CODES)
        ledger = context.open_ledger(config.load(cfg))
        importer.import_bundle(ledger.store, DirSource(v1), {"hq1": signing[0].public_key()},
                               program)
        port = free_port()
        proc = subprocess.Popen(
            [sys.executable, "-m", "sync.hq_cli", "serve", "--db", db_url, "--broker", broker.url,
             "--ca", str(broker.pki["ca"]), "--username", login_.username,
             "--password-file", str(broker.folder / f"{login_.username}.password"),
             "--listen", f"127.0.0.1:{port}", "--trust", f"hq1={signing[1]}",
             "--bundles", str(tmp_path / "bundles"), "--max-upload-mb", "1", *extra],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        http = Http(f"http://127.0.0.1:{port}")
        agent = Agent(config.load(cfg))
        thread = threading.Thread(target=agent.run, daemon=True)
        try:
            wait_until(lambda: _up(http, proc), 60, what="kiosk-hq serve answering /healthz")
            thread.start()
            yield type("Served", (), dict(http=http, db_url=db_url, ledger=ledger, program=program,
                                          tmp=tmp_path, proc=proc))
        finally:
            agent.stop()
            thread.join(15)
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
            ledger.store.close()


def _up(http, proc):
    if proc.poll() is not None:
        raise AssertionError(f"serve exited: {proc.stdout.read()}")
    try:
        return http.request("GET", "/healthz")[0] == 200
    except OSError:
        return False


def signed_tar(tmp_path, signing, program, version, rows, *extra) -> Path:
    """A bundle .tar made the way an owner makes one: ``kiosk-hq sign --tar`` from a CSV,
    with the program's salt kept beside the key."""
    work = tmp_path / f"owner-{uuid.uuid4().hex[:6]}"
    keydir = work / "keys"
    keydir.mkdir(parents=True)
    private = keydir / keys.PRIVATE_NAME
    private.write_bytes((signing[1].parent / keys.PRIVATE_NAME).read_bytes())
    (keydir / f"{program}.salt").write_text(base64.b64encode(SALT).decode() + "\n")
    table = work / f"codes-{version}.csv"
    table.write_text("code,reward_id,valid_from,valid_until,max_uses,stores\n"
                     + "".join(f"{code},reward,,,{uses},\n" for code, uses in rows))
    made = hq("sign", str(table), "--key", str(private), "--key-id", "hq1", "--program", program,
              "--version", str(version), "--out", str(work / f"list-{version}"), "--tar", *extra)
    assert made.returncode == 0, made.stderr
    return work / f"list-{version}.tar"


def multipart(fields: dict, file: tuple[str, bytes] | None) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    out = b""
    for name, value in fields.items():
        out += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n"
                f"{value}\r\n").encode()
    if file:
        out += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"bundle\"; "
                f"filename=\"{file[0]}\"\r\nContent-Type: application/x-tar\r\n\r\n").encode()
        out += file[1] + b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return out, f"multipart/form-data; boundary={boundary}"


def upload(http, fields, file):
    body, kind = multipart(fields, file)
    return raw(http, "POST", "/lists/upload", body, {"Content-Type": kind})


def raw(http, method, path, body, headers):
    req = urllib.request.Request(http.base + path, data=body, method=method, headers=headers)
    if http.cookies:
        req.add_header("Cookie", "; ".join(f"{k}={v}" for k, v in http.cookies.items()))
    try:
        resp = urllib.request.build_opener(_NoRedirect).open(req, timeout=60)
    except urllib.error.HTTPError as err:
        resp = err
    for value in resp.headers.get_all("Set-Cookie") or []:
        name, _, rest = value.partition("=")
        http.cookies[name] = rest.split(";", 1)[0]
    return resp.status, dict(resp.headers), resp.read().decode()


def announced(http, path, length, headers) -> tuple[int, str]:
    """Announce a body of ``length`` bytes and wait for the answer before sending any:
    a server that refuses by Content-Length answers at once."""
    host, port = http.base.rsplit("/", 1)[1].split(":")
    conn = client.HTTPConnection(host, int(port), timeout=30)
    try:
        conn.putrequest("POST", path)
        for name, value in {**headers, "Content-Length": str(length)}.items():
            conn.putheader(name, value)
        if http.cookies:
            conn.putheader("Cookie", "; ".join(f"{k}={v}" for k, v in http.cookies.items()))
        conn.endheaders()
        resp = conn.getresponse()
        return resp.status, resp.read().decode()
    finally:
        conn.close()


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def device_version(http, token) -> int | None:
    status, _, body = http.request("GET", "/api/v1/devices",
                                   headers={"Authorization": f"Bearer {token}"})
    assert status == 200
    found = [d for d in json.loads(body)["devices"] if d["device"] == "k1"]
    return found[0]["list_version"] if found else None


def token_for(served, name="platform"):
    made = hq("api-token", "create", "--db", served.db_url, "--name", name)
    assert made.returncode == 0, made.stderr
    return made.stdout.strip().splitlines()[-1]


def test_owner_uploads_a_list_signed_offline_hq_publishes_it_and_the_device_runs_it(
        tmp_path, db_url, signing):
    with serve_with_lists(tmp_path, db_url, signing) as served:
        http, program = served.http, served.program
        csrf = login(http, served.db_url)
        token = token_for(served)
        wait_until(lambda: device_version(http, token) == 1, 30, what="k1 reporting list 1")
        page = http.request("GET", "/lists")[2]
        assert 'enctype="multipart/form-data"' in page and "hq1" in page
        good = signed_tar(tmp_path, signing, program, 2, [("CODE-0001", 1), ("CODE-0004", 3)])

        # no CSRF token: refused, nothing kept
        assert upload(http, {"csrf": "forged", "publish": "1"}, ("l.tar", good.read_bytes()))[0] == 400
        # a tampered bundle: a clear refusal, nothing kept
        bad = bytearray(good.read_bytes())
        at = bad.find(b'"program"')
        bad[at + 12] ^= 0x01
        status, _, body = upload(http, {"csrf": csrf, "publish": "1"}, ("bad.tar", bytes(bad)))
        assert status == 400 and "The list was not taken" in body and "signature" in body, re.findall(r"class=.error.*", body)
        # signed with a key HQ does not trust
        other = make_signing_key(tmp_path / "other")
        stranger = make_bundle(tmp_path / "stranger", other[0], key_id="rogue", program=program,
                               version=2, codes=["X-1"])
        with tarfile.open(tmp_path / "stranger.tar", "w") as tar:
            tar.add(stranger, arcname="stranger")
        status, _, body = upload(http, {"csrf": csrf}, ("s.tar", (tmp_path / "stranger.tar").read_bytes()))
        assert status == 400 and "rogue" in body
        # larger than --max-upload-mb 1
        status, body = announced(http, "/lists/upload", (1 << 20) + 100,
                                 {"Content-Type": "multipart/form-data; boundary=x"})
        assert status == 413 and "larger than the upload limit" in body
        db = HqDb(served.db_url)
        try:
            assert db.count("code_lists") == 0
        finally:
            db.close()
        assert not list((tmp_path / "bundles").glob("*.tar"))

        status, headers, _ = upload(http, {"csrf": csrf, "publish": "1"}, ("list-2.tar", good.read_bytes()))
        assert status == 303 and headers["location"] == "/lists"
        page = http.request("GET", "/lists")[2]
        assert f"Version 2 of {program} is stored and published." in page
        wait_until(lambda: device_version(http, token) == 2, 60, what="k1 running the uploaded list 2")
        page = http.request("GET", "/lists")[2]
        row = re.search(rf"<td>{program}</td><td class=\"n\">2</td>.*?</tr>", page, re.S).group(0)
        assert "1: k1" in row and "owner" in row
        assert served.ledger.confirm("CODE-0004").redemption_id  # a code only list 2 has

        db = HqDb(served.db_url)
        try:
            kept = db.rows("SELECT version, records, file, published_by FROM code_lists")
            assert kept == [{"version": 2, "records": 2, "file": kept[0]["file"], "published_by": "owner"}]
            assert (tmp_path / "bundles" / kept[0]["file"]).is_file()
            uses = db.rows("SELECT max_uses FROM codes WHERE program = ? ORDER BY max_uses", (program,))
            assert [u["max_uses"] for u in uses] == [1, 3]
        finally:
            db.close()
        audit = http.request("GET", "/audit")[2]
        assert "list.upload" in audit and "list.publish" in audit and "list.refused" in audit

        # the same version again with other contents: refused; a stored list can be published again
        clash = signed_tar(tmp_path, signing, program, 2, [("CODE-0009", 1)])
        status, _, body = upload(http, {"csrf": csrf}, ("clash.tar", clash.read_bytes()))
        assert status == 409 and "already stored with other contents" in body
        assert http.request("POST", "/lists/publish", data={"program": program, "version": "2",
                                                           "csrf": "x"})[0] == 400
        assert http.request("POST", "/lists/publish", data={"program": program, "version": "2",
                                                           "csrf": csrf})[0] == 303

        manager = Http(http.base)
        login(manager, served.db_url, name="mgr", role="manager", stores=("s1",))
        assert manager.request("GET", "/lists")[0] == 403


def test_integration_posts_a_signed_bundle_and_hq_signs_json_only_when_opted_out_by_default(
        tmp_path, db_url, signing):
    with serve_with_lists(tmp_path, db_url, signing) as served:
        http, program = served.http, served.program
        token = token_for(served)
        auth = {"Authorization": f"Bearer {token}"}
        tar = signed_tar(tmp_path, signing, program, 2, [("CODE-0005", 1)])
        assert raw(http, "POST", "/api/v1/code-lists", tar.read_bytes(),
                   {"Content-Type": "application/x-tar"})[0] == 401
        status, _, body = raw(http, "POST", "/api/v1/code-lists", tar.read_bytes(),
                              {**auth, "Content-Type": "application/x-tar"})
        assert status == 201, body
        made = json.loads(body)
        assert (made["program"], made["version"], made["records"]) == (program, 2, 1)
        assert made["published_by"] == "token:platform"
        wait_until(lambda: device_version(http, token) == 2, 60, what="k1 on the posted list")

        codes = {"program": program, "codes": [{"code": "NEW-1", "reward_id": "reward"}]}
        status, _, body = raw(http, "POST", "/api/v1/code-lists", json.dumps(codes).encode(),
                              {**auth, "Content-Type": "application/json"})
        assert status == 409 and "HQ holds no signing key" in body
        status, body = announced(http, "/api/v1/code-lists", 1 << 30,
                                 {**auth, "Content-Type": "application/x-tar"})
        assert status == 413 and "larger than 1 MB" in body
        # the same without a Content-Length (chunked): stopped at the limit too
        chunks = iter([b"\0" * 65536] * 20)
        status, _, body = raw(http, "POST", "/api/v1/code-lists", chunks,
                              {**auth, "Content-Type": "application/x-tar"})
        assert status == 413
        assert raw(http, "POST", "/api/v1/code-lists", b"x", {**auth, "Content-Type": "text/plain"})[0] == 415

        # a delta on a version the broker's chain does not end at: kept, not published
        stray = signed_tar(tmp_path, signing, program, 9, [("CODE-0006", 1)], "--base-version", "7")
        status, _, body = raw(http, "POST", "/api/v1/code-lists", stray.read_bytes(),
                              {**auth, "Content-Type": "application/x-tar"})
        assert status == 502 and "applies on version 7" in body, body
        listing = json.loads(http.request("GET", "/api/v1/code-lists", headers=auth)[2])
        assert [(x["version"], x["published_at"] is None) for x in listing["lists"]] == [(9, True), (2, False)]
        assert device_version(http, token) == 2
        listing["lists"] = listing["lists"][1:]
        assert [(x["version"], x["devices"]) for x in listing["lists"]] == [(2, ["k1"])]
        assert listing["devices_by_version"] == [{"program": program, "list_version": 2,
                                                  "devices": ["s1/k1"]}]
        spec = json.loads(http.request("GET", "/api/openapi.json")[2])
        post = spec["paths"]["/api/v1/code-lists"]["post"]
        assert {"application/x-tar", "application/json", "text/csv"} <= set(post["requestBody"]["content"])
        assert "get" in spec["paths"]["/api/v1/code-lists"]
        assert not list((tmp_path / "bundles" / ".incoming").iterdir())


def test_hq_signs_codes_sent_as_json_and_csv_when_the_operator_opted_in(tmp_path, db_url, signing):
    private = signing[1].parent / keys.PRIVATE_NAME
    with serve_with_lists(tmp_path, db_url, signing, "--signing-key", str(private),
                          "--key-id", "hq1") as served:
        http, program = served.http, served.program
        token = token_for(served)
        auth = {"Authorization": f"Bearer {token}"}
        rewards = {"coffee": {"type": "item", "value": 1, "title": {"en": "Free coffee"}}}
        full = {"program": program, "version": 5, "rewards": rewards, "codes": [
            {"code": c, "reward_id": "coffee"} for c in CODES] + [
            {"code": "JSON-1", "reward_id": "coffee", "max_uses": 2, "stores": ["s1"]}]}
        status, _, body = raw(http, "POST", "/api/v1/code-lists", json.dumps(full).encode(),
                              {**auth, "Content-Type": "application/json"})
        assert status == 201, body
        assert json.loads(body)["records"] == 4
        wait_until(lambda: device_version(http, token) == 5, 60, what="k1 on HQ's list 5")
        assert served.ledger.confirm("JSON-1").redemption_id

        bad = {"program": program, "delta": True, "codes": [{"code": "X", "reward_id": "nope"}]}
        status, _, body = raw(http, "POST", "/api/v1/code-lists", json.dumps(bad).encode(),
                              {**auth, "Content-Type": "application/json"})
        assert status == 400 and "code 1: reward_id 'nope'" in body

        delta = "code,reward_id,max_uses,op\nCSV-1,coffee,1,put\nCODE-0003,,,revoke\n"
        status, _, body = raw(http, "POST", f"/api/v1/code-lists?program={program}&delta=true",
                              delta.encode(), {**auth, "Content-Type": "text/csv"})
        assert status == 201, body
        made = json.loads(body)
        assert (made["version"], made["base_version"], made["records"]) == (6, 5, 2)
        wait_until(lambda: device_version(http, token) == 6, 60, what="k1 on HQ's delta 6")
        assert served.ledger.confirm("CSV-1").redemption_id
        assert served.ledger.confirm("CODE-0003").redemption_id is None  # revoked

        for body, words in (({**full, "program": "a/b"}, "program 'a/b'"),
                            ({**full, "version": 6}, "not newer than version 6"),
                            ({**full, "version": None, "expires_days": "soon"}, "expires_days"),
                            ({**full, "version": None, "codes": [{"code": "Z", "colour": "red"}]},
                             "colour")):
            status, _, answer = raw(http, "POST", "/api/v1/code-lists", json.dumps(body).encode(),
                                    {**auth, "Content-Type": "application/json"})
            assert status in (400, 409) and words in answer, (words, answer)
        db = HqDb(served.db_url)
        try:
            assert [r["version"] for r in db.rows("SELECT version FROM code_lists ORDER BY version")] == [5, 6]
            audit = [r["action"] for r in db.rows("SELECT action FROM audit")]
            assert audit.count("list.upload") == 2 and audit.count("list.publish") == 2
        finally:
            db.close()
