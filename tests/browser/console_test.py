#!/usr/bin/python3
"""The web console in a real browser (headless Debian chromium through chromium-driver and
python3-selenium) against a real 3-node cluster.

    console_test.py --rpoold build/apps/rpoold --out DIR

The page is loaded from a follower. It must show the leader, the members and every catalog item;
after 1,000 draws through HTTP, the draw counter and the per-item counts must equal what the
clients were answered, and the fairness p-value the one this test computes from those answers
(with its own closed-form chi-square survival function); an item upserted through the page once
the admin token is typed in must be in GET /v1/pool, and the token in no storage of the page; a
killed leader must be replaced on the page within 5 s; and the browser must log no JavaScript
error. Screenshots go to DIR (console-1-loaded.png ... console-4-new-leader.png).

Exit 0 passed, 1 failed, 77 skipped (no chromium, chromium-driver or python3-selenium).
"""

import argparse
import collections
import math
import os
import shutil
import sys
import tempfile
import time
import traceback

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
from cluster import Cluster, TestFailure, check, wait_until  # noqa: E402
import openapi_check  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
TOKEN = "console-test-token"
# Quantities large enough that nothing runs out in 1,000 draws: every unit has the same odds, so
# the expected counts are n * weight / total.
CATALOG = [
    {"item_id": "diamond", "quantity": 5000, "probability": 5},
    {"item_id": "gold", "quantity": 5000, "probability": 15},
    {"item_id": "silver", "quantity": -1, "probability": 30},
    {"item_id": "mud", "quantity": -1, "probability": 50},
]
DRAWS = 1000
NEW_LEADER_WITHIN_S = 5.0


def chi_square_sf_dof3(x):
    """P(X >= x) for X chi-square with 3 degrees of freedom, in closed form:
    erfc(sqrt(x/2)) + sqrt(2x/pi) exp(-x/2)."""
    return math.erfc(math.sqrt(x / 2)) + math.sqrt(2 * x / math.pi) * math.exp(-x / 2)


def browser(profile):
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
    options = Options()
    options.binary_location = CHROMIUM
    for arg in ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run",
                "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--window-size=1400,1800"]:
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(15)
    return driver


def text_of(driver, element_id):
    # Read in one script: the page replaces its elements at every poll, so a handle kept across
    # two WebDriver calls may be stale.
    return driver.execute_script(
        "const e = document.getElementById(arguments[0]); return e ? e.textContent : null;", element_id)


def cells(driver, table_id, attr):
    """{row's data-<attr>: [cell texts]} of a table's body, read in one script."""
    return driver.execute_script(
        """const out = {};
           for (const tr of document.querySelectorAll(`#${arguments[0]} tbody tr`))
             out[tr.getAttribute('data-' + arguments[1])] = [...tr.cells].map(td => td.textContent);
           return out;""", table_id, attr)


def javascript_errors(entries):
    """The browser log's errors that come from the page's code. A failed request (a 503 while no
    leader is known, the 404 of /v1/pools on a node without pools) is logged by the browser with
    source 'network': an answer of the server, which the page handles, not an error of its code."""
    return [e for e in entries if e.get("level") == "SEVERE" and e.get("source") != "network"]


def run(args):
    openapi_check.enable()  # the test's own requests must fit docs/openapi.json
    profile = tempfile.mkdtemp(prefix="rpool-console-profile-")
    driver = None
    try:
        with Cluster(os.path.abspath(args.rpoold), nodes=3, catalog=CATALOG, admin_token=TOKEN) as cluster:
            try:
                cluster.start_all()
                leader = cluster.leader()
                follower = next(n for n in cluster.nodes if n is not leader)
                driver = browser(profile)
                log = []

                # 1. The page, from a follower: the leader, the members, every catalog item.
                driver.get(follower.url + "/")
                wait_until(lambda: text_of(driver, "leader-id") == f"node {leader.id}", 10,
                           "the page to name the leader")
                wait_until(lambda: set(cells(driver, "members", "id")) == {"1", "2", "3"}, 5,
                           "the page to list the three members")
                wait_until(lambda: set(cells(driver, "items", "item")) == {c["item_id"] for c in CATALOG}, 5,
                           "the page to list every catalog item")
                members = cells(driver, "members", "id")
                check(members[str(leader.id)][4] == "leader", f"the leader's row says leader: {members}")
                check(f"node {follower.id}" in text_of(driver, "served-by"), "the page says which node served it")
                driver.save_screenshot(os.path.join(args.out, "console-1-loaded.png"))

                # 2. 1,000 draws through HTTP, half through the follower: counters and fairness.
                answered = collections.Counter()
                for i in range(DRAWS // 100):
                    node = follower if i % 2 else leader
                    res = node.client().post("/v1/draw", {"count": 100})
                    check(res.status == 200, f"draw answered {res.status}: {res.body[:200]}")
                    for d in res.json["draws"]:
                        answered[d["item_id"]] += 1
                check(sum(answered.values()) == DRAWS and None not in answered, f"answers: {answered}")
                wait_until(lambda: text_of(driver, "draws-total") == str(DRAWS), 10,
                           "the page's draw counter to reach 1000")
                wait_until(lambda: {k: int(v[1]) for k, v in cells(driver, "fairness", "item").items()}
                           == {c["item_id"]: answered[c["item_id"]] for c in CATALOG}, 5,
                           f"the page's per-item counts to equal the answers {dict(answered)}")
                pool = leader.client().get("/v1/pool").json
                check(text_of(driver, "last-request-id") in (str(pool["last_request_id"]), str(DRAWS)),
                      "the page shows last_request_id")
                total_weight = sum(c["probability"] for c in CATALOG)
                chi2 = sum((answered[c["item_id"]] - DRAWS * c["probability"] / total_weight) ** 2
                           / (DRAWS * c["probability"] / total_weight) for c in CATALOG)
                want_p = chi_square_sf_dof3(chi2)
                got_p = float(driver.execute_script(
                    "return document.getElementById('fair-total-p').dataset.value;"))
                log.append(f"fairness: chi2 {chi2:.4f}, p computed here {want_p:.6g}, on the page {got_p:.6g}")
                check(abs(got_p - want_p) <= 1e-9 + 1e-6 * want_p,
                      f"the page's p-value {got_p} is the test's {want_p} (chi2 {chi2})")
                check(text_of(driver, "fair-total-dof") == "3", "3 degrees of freedom for 4 items")
                flag = text_of(driver, "fair-total-flag")
                check(("significant" in flag) == (want_p < 0.001), f"the flag says {flag!r} at p {want_p}")
                driver.save_screenshot(os.path.join(args.out, "console-2-after-draws.png"))

                # 3. Admin: locked until the token is typed in, then an upsert through the page.
                unlocked = "return !document.getElementById('upsert-submit').matches(':disabled');"
                check(not driver.execute_script(unlocked),
                      "the admin actions are disabled before the token is entered")
                driver.find_element("id", "token").send_keys(TOKEN)
                driver.find_element("id", "token-set").click()
                wait_until(lambda: driver.execute_script(unlocked), 2,
                           "the admin actions to unlock")
                driver.find_element("id", "upsert-id").send_keys("ruby")
                driver.find_element("id", "upsert-quantity").send_keys("7")
                driver.find_element("id", "upsert-probability").send_keys("3")
                driver.find_element("id", "upsert-submit").click()

                def ruby():
                    items = {i["item_id"]: i for i in leader.client().get("/v1/pool").json["items"]}
                    return items.get("ruby") == {"item_id": "ruby", "quantity": 7, "probability": 3}
                wait_until(ruby, 5, "the item upserted through the page to be in GET /v1/pool")
                wait_until(lambda: "ruby" in cells(driver, "items", "item"), 5, "the page to list ruby")
                stored = driver.execute_script(
                    "return [localStorage.length, sessionStorage.length, document.cookie];")
                check(stored == [0, 0, ""], f"the token is in no storage of the page: {stored}")
                check(TOKEN not in driver.page_source, "the token is not in the page's DOM")
                driver.save_screenshot(os.path.join(args.out, "console-3-admin-upsert.png"))

                # 4. Kill the leader: the page (still on the follower) names a new one within 5 s.
                old = leader.id
                killed_at = time.monotonic()
                leader.kill()
                wait_until(lambda: text_of(driver, "leader-id") not in ("", "none", "–", f"node {old}"),
                           NEW_LEADER_WITHIN_S, "the page to show a new leader after the leader's kill",
                           interval=0.05)
                shown = time.monotonic() - killed_at
                new = text_of(driver, "leader-id")
                survivor = cluster.leader(among=[n for n in cluster.nodes if n.id != old])
                check(new == f"node {survivor.id}", f"the page names {new}, the cluster says node {survivor.id}")
                log.append(f"new leader {new} on the page {shown:.2f} s after the kill of node {old}")
                time.sleep(1.5)  # let the charts and the leader-change list take one more poll
                driver.save_screenshot(os.path.join(args.out, "console-4-new-leader.png"))

                # 5. No JavaScript error in the browser's log.
                entries = driver.get_log("browser")
                errors = javascript_errors(entries)
                check(not errors, f"JavaScript errors in the browser log: {errors}")
                log.append(f"browser log: {len(entries)} entries, "
                           f"{sum(1 for e in entries if e.get('source') == 'network')} network, 0 JavaScript errors")
                for line in log:
                    print("    " + line)
            except Exception:
                print(cluster.tails(), file=sys.stderr)
                raise
    finally:
        if driver is not None:
            driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rpoold", required=True)
    parser.add_argument("--out", required=True, help="where the screenshots go")
    args = parser.parse_args()
    try:
        import selenium  # noqa: F401
    except ImportError:
        print("python3-selenium is not installed: skipped", file=sys.stderr)
        return 77
    for path in (CHROMIUM, CHROMEDRIVER):
        if not os.access(path, os.X_OK):
            print(f"{path} is not installed: skipped", file=sys.stderr)
            return 77
    os.makedirs(args.out, exist_ok=True)
    started = time.monotonic()
    try:
        run(args)
    except (TestFailure, Exception):
        traceback.print_exc()
        print(f"console-browser: FAILED after {time.monotonic() - started:.1f} s")
        return 1
    print(f"console-browser: passed in {time.monotonic() - started:.1f} s; screenshots in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
