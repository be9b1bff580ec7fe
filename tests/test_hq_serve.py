"""``kiosk-hq serve`` as an integrator and an owner meet it: a real TLS mosquitto, a
throwaway PostgreSQL cluster (and the embedded SQLite default), a real device agent,
the server as its own process on a free loopback port, and plain HTTP requests."""

import json
import os
import re
import subprocess
import sys
import tarfile
import threading
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

import pytest

from kiosk import config, context
from kiosk.core import importer
from kiosk.core.bundle import DirSource
from sync.agent import Agent
from sync.hq import report
from sync.hq.db import MIGRATIONS, HqDb
from sync.hq.engine import DbUrlError, open_engine
from sync.testing import (
    Broker,
    free_port,
    hq_settings,
    make_bundle,
    make_signing_key,
    wait_until,
    write_device_config,
)


def event(i, *, kind="redeem", code="c1", voids=None, device="k1"):
    return {"id": f"e{i}", "seq": i, "device": device, "store": "s1", "kind": kind,
            "voids": voids, "code_hash": code, "reward_id": "coffee", "list_version": 1,
            "at": f"2026-12-01T10:00:{i:02d}Z", "clock": "synced", "staff": None}


# -- the database on both engines ---------------------------------------------------------
def test_engine_urls(tmp_path):
    assert open_engine(tmp_path / "hq.sqlite").path == tmp_path / "hq.sqlite"
    assert open_engine(f"sqlite:///{tmp_path}/x.sqlite").path == tmp_path / "x.sqlite"
    assert open_engine("postgresql://hq@db/hq").kind == "postgresql"
    assert open_engine("postgresql://hq:s3cret@db/hq").display == "postgresql://hq:***@db/hq"
    for bad in ("mysql://x/y", "sqlite:///", ""):
        with pytest.raises(DbUrlError):
            open_engine(bad)


def test_events_once_conflicts_and_report_on_both_engines(db_url):
    db = HqDb(db_url)
    try:
        first = db.store_batch("cafe", "s1", "k1", [event(1), event(2, code="c2")])
        again = db.store_batch("cafe", "s1", "k1", [event(1), event(2, code="c2")])
        late = db.store_batch("cafe", "s1", "k2", [event(3, device="k2")])  # c1 a second time
        assert (first.new, again.new, late.new) == (2, 0, 1)
        assert late.conflicts == ["e3"] and db.count("conflicts") == 1
        db.store_batch("cafe", "s1", "k1", [event(4, kind="void", voids="e2", code="c2")])
        built = report.build(db)
        assert built["totals"] == {"redeemed": 3, "voided": 1, "conflicts": 1}
        names = [r["name"] for r in db.rows("SELECT name FROM migrations ORDER BY name")]
        assert names == [m.name for m in MIGRATIONS]
    finally:
        db.close()
    reopened = HqDb(db_url)  # migrations are not applied twice, data stays
    try:
        assert reopened.count("events") == 4
    finally:
        reopened.close()


def test_an_old_hq_sqlite_made_before_migrations_upgrades_in_place(tmp_path):
    import sqlite3

    path = tmp_path / "old.sqlite"
    old = sqlite3.connect(path)
    old.executescript(MIGRATIONS[0].sqlite[0] + ";")
    old.execute("INSERT INTO events (id, program, store, device, kind, code_hash, at, received_at) "
                "VALUES ('old1', 'cafe', 's1', 'k1', 'redeem', 'c9', '2026-01-01', '2026-01-01')")
    old.commit()
    old.close()
    db = HqDb(path)
    try:
        assert db.rows("SELECT id FROM events") == [{"id": "old1"}]
        assert db.count("api_tokens") == 0
    finally:
        db.close()


# -- the service ----------------------------------------------------------------------------
def hq(*args, stdin=None, timeout=60):
    return subprocess.run([sys.executable, "-m", "sync.hq_cli", *args], input=stdin,
                          capture_output=True, text=True, timeout=timeout, check=False)


class Http:
    def __init__(self, base):
        self.base = base
        self.cookies: dict[str, str] = {}

    def request(self, method, path, *, data=None, headers=None):
        body = urllib.parse.urlencode(data).encode() if data is not None else None
        req = urllib.request.Request(self.base + path, data=body, method=method,
                                     headers=dict(headers or {}))
        if self.cookies:
            req.add_header("Cookie", "; ".join(f"{k}={v}" for k, v in self.cookies.items()))
        if body is not None:
            req.add_header("Content-Type", "application/x-www-form-urlencoded")
        opener = urllib.request.build_opener(NoRedirect)
        try:
            resp = opener.open(req, timeout=15)
        except urllib.error.HTTPError as err:
            resp = err
        for value in resp.headers.get_all("Set-Cookie") or []:
            name, _, rest = value.partition("=")
            self.cookies[name] = rest.split(";", 1)[0]
        return resp.status, dict(resp.headers), resp.read().decode()


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


@pytest.fixture(scope="module")
def signing(tmp_path_factory):
    return make_signing_key(tmp_path_factory.mktemp("keys"))


@pytest.fixture
def served(tmp_path, db_url, signing):
    """A broker, one device with three confirmed redemptions and its agent, and
    ``kiosk-hq serve`` on ``db_url``."""
    with Broker(tmp_path / "broker") as broker:
        program = f"p{uuid.uuid4().hex[:8]}"
        login = hq_settings(broker)  # serve's own HQ login (client id = login)
        password = broker.add_device(program, "s1", "k1")
        cfg = write_device_config(tmp_path / "k1", broker, device="k1", store="s1", program=program,
                                  trust={"hq1": signing[1]}, password_file=password)
        bundle = make_bundle(tmp_path / "b1", signing[0], key_id="hq1", program=program,
                             version=1, codes=["CODE-0001", "CODE-0002", "CODE-0003"])
        ledger = context.open_ledger(config.load(cfg))
        importer.import_bundle(ledger.store, DirSource(bundle), {"hq1": signing[0].public_key()},
                               program)
        for code in ("CODE-0001", "CODE-0002", "CODE-0003"):
            assert ledger.confirm(code).redemption_id
        port = free_port()
        proc = subprocess.Popen(
            [sys.executable, "-m", "sync.hq_cli", "serve", "--db", db_url, "--broker", broker.url,
             "--ca", str(broker.pki["ca"]), "--username", login.username,
             "--password-file", str(broker.folder / f"{login.username}.password"),
             "--listen", f"127.0.0.1:{port}", "--trust", f"hq1={signing[1]}",
             "--bundles", str(tmp_path / "bundles")],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        http = Http(f"http://127.0.0.1:{port}")
        try:
            wait_until(lambda: _up(http), 60, what="kiosk-hq serve answering /healthz")
            agent = Agent(config.load(cfg))
            thread = threading.Thread(target=agent.run, daemon=True)
            thread.start()
            wait_until(lambda: not ledger.pending_events(), 60, what="device outbox acked by HQ")
            yield type("Served", (), dict(http=http, db_url=db_url, proc=proc, ledger=ledger,
                                          program=program, signing=signing))
            agent.stop()
            thread.join(15)
        finally:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
            ledger.store.close()


def _up(http):
    try:
        return http.request("GET", "/healthz")[0] == 200
    except OSError:
        return False


def test_integrator_reads_redemptions_with_a_token_and_pages_by_cursor(served):
    http = served.http
    made = hq("api-token", "create", "--db", served.db_url, "--name", "loyalty")
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip().splitlines()[-1]
    auth = {"Authorization": f"Bearer {token}"}

    assert http.request("GET", "/api/v1/redemptions")[0] == 401
    assert http.request("GET", "/api/v1/redemptions",
                        headers={"Authorization": "Bearer khq_wrong"})[0] == 401
    status, _, body = http.request("GET", "/api/v1/redemptions?limit=2", headers=auth)
    assert status == 200
    page = json.loads(body)
    assert len(page["events"]) == 2
    first = page["events"][0]
    assert set(first) >= {"id", "seq", "device", "store", "kind", "voids", "code_hash",
                          "reward_id", "list_version", "at", "clock", "staff"}
    assert first["device"] == "k1" and first["kind"] == "redeem"
    rest = json.loads(http.request("GET", f"/api/v1/redemptions?since={page['next']}",
                                   headers=auth)[2])
    ids = [e["id"] for e in page["events"] + rest["events"]]
    local = {r["id"] for r in served.ledger.history() if r["kind"] == "redeem"}
    assert len(ids) == 3 and set(ids) == local
    empty = json.loads(http.request("GET", f"/api/v1/redemptions?since={rest['next']}",
                                    headers=auth)[2])
    assert empty == {"events": [], "next": rest["next"]}

    revoked = hq("api-token", "revoke", "--db", served.db_url, "--name", "loyalty")
    assert revoked.returncode == 0, revoked.stderr
    assert http.request("GET", "/api/v1/redemptions", headers=auth)[0] == 401


def test_openapi_document_names_every_api_endpoint(served):
    status, _, body = served.http.request("GET", "/api/openapi.json")
    assert status == 200
    paths = json.loads(body)["paths"]
    assert {"/healthz", "/api/v1/redemptions"} <= set(paths)
    params = {p["name"] for p in paths["/api/v1/redemptions"]["get"]["parameters"]}
    assert {"since", "limit"} <= params


def login(http, db_url, name="owner", password="correct horse 1", role="owner", stores=()):
    args = ["user", "add", "--db", db_url, "--name", name, "--role", role]
    for store in stores:
        args += ["--store", store]
    added = hq(*args, stdin=password + "\n")
    assert added.returncode == 0, added.stderr
    page = http.request("GET", "/login")[2]
    csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
    ok = http.request("POST", "/login", data={"user": name, "password": password, "csrf": csrf})
    assert ok[0] == 303
    return csrf_of(http)


def csrf_of(http, path="/conflicts"):
    return re.search(r'name="csrf" value="([^"]+)"', http.request("GET", path)[2]).group(1)


def test_dashboard_needs_a_login_with_csrf_and_shows_the_redemptions(served):
    http = served.http
    status, headers, _ = http.request("GET", "/")
    assert status == 303 and headers["location"].startswith("/login")
    added = hq("user", "add", "--db", served.db_url, "--name", "owner", stdin="correct horse 1\n")
    assert added.returncode == 0, added.stderr

    status, _, page = http.request("GET", "/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
    no_csrf = http.request("POST", "/login", data={"user": "owner", "password": "correct horse 1",
                                                   "csrf": "forged"})
    assert no_csrf[0] == 400
    wrong = http.request("POST", "/login", data={"user": "owner", "password": "nope nope nope",
                                                 "csrf": csrf})
    assert wrong[0] == 401 and "Wrong user name or password" in wrong[2]
    ok = http.request("POST", "/login", data={"user": "owner", "password": "correct horse 1",
                                              "csrf": csrf, "next": "//evil.example/"})
    assert ok[0] == 303 and ok[1]["location"] == "/"
    status, _, dash = http.request("GET", "/")
    assert status == 200
    assert re.search(r"<strong>3</strong> redeemed", dash)
    ru = http.request("GET", "/?lang=ru")[2]
    assert "Погашено: <strong>3</strong>" in ru and '<html lang="ru">' in ru
    assert '<html lang="ru">' in http.request("GET", "/fleet")[2]  # the choice stays


def test_serve_refuses_bad_arguments_and_exits_when_it_cannot_collect(tmp_path):
    bad = hq("serve", "--db", f"sqlite:///{tmp_path / 'x.sqlite'}", "--broker",
             "mqtt://127.0.0.1:1", "--listen", "nowhere")
    assert bad.returncode == 2 and "--listen 'nowhere'" in bad.stderr
    down = hq("serve", "--db", f"sqlite:///{tmp_path / 'x.sqlite'}", "--broker",
              f"mqtt://127.0.0.1:{free_port()}", "--listen", f"127.0.0.1:{free_port()}",
              timeout=90)
    assert down.returncode == 1 and "collector stopped" in down.stderr


def test_fleet_page_and_api_show_the_device_from_its_heartbeat(served):
    login(served.http, served.db_url)
    wait_until(lambda: ">k1<" in served.http.request("GET", "/fleet")[2], 30,
               what="k1's heartbeat on the fleet page")
    page = served.http.request("GET", "/fleet")[2]
    assert re.search(r"<td>k1</td><td>online</td>", page)
    made = hq("api-token", "create", "--db", served.db_url, "--name", "fleet-reader")
    token = made.stdout.strip().splitlines()[-1]
    status, _, body = served.http.request("GET", "/api/v1/devices",
                                          headers={"Authorization": f"Bearer {token}"})
    assert status == 200
    k1 = [d for d in json.loads(body)["devices"] if d["device"] == "k1"][0]
    assert k1["state"] == "online" and k1["list_version"] == 1 and k1["outbox"] == 0


def test_csv_export_search_and_a_manager_sees_only_their_stores(served):
    http = served.http
    login(http, served.db_url)
    status, headers, body = http.request("GET", "/redemptions.csv")
    assert status == 200 and headers["content-type"].startswith("text/csv")
    lines = body.strip().splitlines()
    assert lines[0].startswith("id,at,program,store") and len(lines) == 4
    one = lines[1].split(",")[0]
    found = http.request("GET", f"/?q={one}")[2]
    assert one in found and "<strong>1</strong> redeemed" in found
    bad = http.request("GET", "/?since=yesterday")[2]
    assert "Dates are YYYY-MM-DD." in bad

    other = Http(http.base)
    login(other, served.db_url, name="mgr", role="manager", stores=("s9",))
    assert "<strong>0</strong> redeemed" in other.request("GET", "/")[2]
    assert len(other.request("GET", "/redemptions.csv")[2].strip().splitlines()) == 1
    assert other.request("GET", "/audit")[0] == 403


def test_friction_page_shows_what_the_counter_audit_trail_sent_and_managers_see_their_stores(
        served):
    from kiosk.core import audit

    trail = audit.AuditLog(served.ledger.store.path, background=False)
    ledger = served.ledger
    trail.record("verdict", ledger.check("CODE-0001"), source="camera")  # already used
    trail.record("verdict", ledger.check("NOPE-1234"), source="keypad")  # unknown, typed
    trail.record("verdict", ledger.check("CODE-0001"), source="camera")
    trail.record("timeout", ledger.check("CODE-0001"), source="camera", note="unconfirmed")
    trail.close()
    http = served.http
    login(http, served.db_url)

    def store_row():
        page = http.request("GET", "/friction?lang=en")[2]
        found = re.search(r'<tr id="store-s1">(.*?)</tr>', page, re.S)
        return found and re.findall(r'<td class="n">([^<]*)</td>', found.group(1)), page
    wait_until(lambda: (store_row()[0] or [""])[0] == "3", 60, what="activity on /friction")
    cells, page = store_row()
    assert cells[:4] == ["3", "1 (33%)", "2", "1"]  # shown, typed, scanned, timed out
    refused = dict(re.findall(r'<tr><td>([^<]+)</td><td class="n">(\d+)</td>', page))
    assert refused["already used"] == "2" and refused["unknown code"] == "1"
    assert "уже использован" in http.request("GET", "/friction?lang=ru")[2]

    other = Http(http.base)
    login(other, served.db_url, name="mgr", role="manager", stores=("s9",))
    assert 'id="store-s1"' not in other.request("GET", "/friction")[2]
    report = hq("report", "--db", served.db_url, "--friction", "--json")
    assert report.returncode == 0, report.stderr
    assert json.loads(report.stdout)["stores"][0]["refusals"]["already_redeemed"] == 2
    token = hq("api-token", "create", "--db", served.db_url, "--name", "bi").stdout.split()[-1]
    auth = {"Authorization": f"Bearer {token}"}
    assert http.request("GET", "/api/v1/friction")[0] == 401
    assert http.request("GET", "/api/v1/friction?since=noon", headers=auth)[0] == 400
    status, _, body = http.request("GET", "/api/v1/friction", headers=auth)
    assert status == 200 and json.loads(body)["totals"]["timeouts"] == 1
    assert "/api/v1/friction" in json.loads(http.request("GET", "/api/openapi.json")[2])["paths"]


def test_a_conflict_is_resolved_once_with_csrf_and_lands_in_the_audit_log(served):
    db = HqDb(served.db_url)
    try:  # a second kiosk redeemed the same single-use code while offline
        first = db.rows("SELECT program, code_hash FROM events LIMIT 1")[0]
        db.store_batch(first["program"], "s1", "k2", [
            {"id": "offline-twin", "seq": 1, "device": "k2", "store": "s1", "kind": "redeem",
             "voids": None, "code_hash": first["code_hash"], "reward_id": "coffee",
             "list_version": 1, "at": "2026-12-01T09:00:00Z", "clock": "rtc", "staff": None}])
    finally:
        db.close()
    http = served.http
    csrf = login(http, served.db_url)
    page = http.request("GET", "/conflicts")[2]
    assert "offline-twin" in page and "used more often than allowed" in page, page[page.find("<tbody>"):][:800]
    form = {"event_id": "offline-twin", "kind": "over_redeemed", "resolution": "charge_back",
            "note": "customer asked twice"}
    assert http.request("POST", "/conflicts/resolve", data={**form, "csrf": "x"})[0] == 400
    assert http.request("POST", "/conflicts/resolve", data={**form, "csrf": csrf})[0] == 303
    assert "offline-twin" not in http.request("GET", "/conflicts")[2]
    done = http.request("GET", "/conflicts?show=done")[2]
    assert "charge back by owner: customer asked twice" in done
    audit = http.request("GET", "/audit")[2]
    assert "conflict.resolve" in audit and "user.add" in audit and "login" in audit


# -- in a real browser -------------------------------------------------------------------
@pytest.fixture
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1280,900", "--lang=en-US"):
        options.add_argument(arg)
    options.binary_location = "/usr/bin/chromium"
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_owner_in_a_browser_signs_in_and_reads_every_page_in_four_languages(served, browser,
                                                                              tmp_path):
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.common.by import By

    def text_of(tag):
        """The text of the page's first <tag>, or "" while a submitted form's answer is still
        loading (no such element yet, or the element was replaced while reading it)."""
        try:
            return browser.find_element(By.TAG_NAME, tag).text
        except (NoSuchElementException, StaleElementReferenceException):
            return ""

    added = hq("user", "add", "--db", served.db_url, "--name", "owner", stdin="correct horse 1\n")
    assert added.returncode == 0, added.stderr
    shots = Path(os.environ.get("HQ_SCREENSHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    browser.get(served.http.base + "/fleet")
    assert browser.current_url.endswith("/login?next=/fleet")
    browser.save_screenshot(str(shots / "hq-login-en.png"))
    browser.find_element(By.ID, "user").send_keys("owner")
    browser.find_element(By.ID, "password").send_keys("correct horse 1")
    browser.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
    wait_until(lambda: browser.current_url.endswith("/fleet"), 15, what="back on /fleet")
    wait_until(lambda: "k1" in text_of("table"), 30, what="k1 on the fleet page")
    # an owner uploads a list made offline (kiosk-hq sign --tar): the device gets it
    made = make_bundle(tmp_path / "list-2", served.signing[0], key_id="hq1", program=served.program,
                       version=2, codes=["CODE-0001", "CODE-0002", "CODE-0003", "CODE-0004"])
    with tarfile.open(tmp_path / "list-2.tar", "w") as tar:
        tar.add(made, arcname="list-2")
    browser.get(served.http.base + "/lists")
    browser.find_element(By.ID, "bundle").send_keys(str(tmp_path / "list-2.tar"))
    browser.find_element(By.CSS_SELECTOR, "form[action='/lists/upload'] input[type=submit]").click()

    wait_until(lambda: "is stored and published" in text_of("main"), 30,
               what="the uploaded list stored and published")

    def k1_on_v2():
        browser.get(served.http.base + "/lists")
        return "1: k1" in text_of("table")
    wait_until(k1_on_v2, 60, interval=1, what="k1 running the uploaded list")
    (tmp_path / "junk.tar").write_bytes(b"not a tar file at all" * 50)
    browser.find_element(By.ID, "bundle").send_keys(str(tmp_path / "junk.tar"))
    browser.find_element(By.CSS_SELECTOR, "form[action='/lists/upload'] input[type=submit]").click()
    wait_until(lambda: browser.find_elements(By.CSS_SELECTOR, "p.error"), 30, what="the refusal")
    refusal = browser.find_element(By.CSS_SELECTOR, "p.error").text
    assert "The list was not taken" in refusal and "the upload: not a readable tar file" in refusal
    assert browser.execute_script("return document.documentElement.scrollWidth") <= 1280
    browser.save_screenshot(str(shots / "hq-lists-refused-en.png"))
    titles = {"en": "Fleet", "uz": "Qurilmalar", "kk": "Құрылғылар", "ru": "Устройства"}
    for lang, title in titles.items():
        for path in ("/", "/fleet", "/conflicts", "/friction", "/lists", "/audit"):
            browser.get(f"{served.http.base}{path}?lang={lang}")
            assert browser.find_element(By.TAG_NAME, "html").get_attribute("lang") == lang
            nav = browser.find_element(By.TAG_NAME, "nav").text
            assert title in nav, f"{lang} {path}: {nav!r}"
            body = browser.find_element(By.TAG_NAME, "body")
            # nothing wider than the window: no horizontal scroll in any language
            assert browser.execute_script("return document.documentElement.scrollWidth") <= 1280
            assert body.text.strip()
            name = "home" if path == "/" else path.strip("/")
            browser.save_screenshot(str(shots / f"hq-{name}-{lang}.png"))
    browser.get(served.http.base + "/?lang=en")
    assert "3 redeemed" in browser.find_element(By.TAG_NAME, "main").text
    bars = browser.find_elements(By.CSS_SELECTOR, "svg.bars rect")
    assert len(bars) >= 1 and all(float(b.get_attribute("height")) > 0 for b in bars)
