"""Screenshots of the Dagster UI on sample data, for the README: `python scripts/screenshots.py --out docs/screenshots`.

Starts dagster-webserver on a throwaway instance (customer_analytics_tests/dagster_services.py): sample data
(`customer-analytics generate-sample`), every asset materialized month by month (`customer-analytics
materialize`, runs recorded in that instance), then headless Chromium (Debian package `chromium`) captures:

* asset-graph.png           the global asset lineage graph, one node per group (`/asset-groups`)
* asset-group-customers.png the `customers` group's assets in detail (`/locations/customer_analytics/asset-groups/customers`)
* cohort-ltv-latest.png     the latest materialization of `cohort_ltv` (`/assets/cohort_ltv?view=events`), its
                            `cohort_heatmap` metadata opened ("[Show Markdown]" clicked through the DevTools protocol)

Dagster's storage and the warehouse are PostgreSQL schemas of `--pg-url` (default: $CUSTOMER_ANALYTICS_TEST_PG_URL)
when given, else SQLite files in a temporary folder; everything is removed afterwards.
"""

from __future__ import annotations

import argparse
import base64
import fcntl
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from customer_analytics_tests.dagster_services import DagsterServices  # noqa: E402

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
# The global lineage graph, one node per asset group. (Expanding every group, `?expanded=global@global:<group>,…`,
# gives a graph too tall for a 1600×1000 window to read.)
GROUPS = ["ingestion", "customers", "segments", "cohorts", "bi"]
ASSET_GRAPH_PATH = "/asset-groups"
# One group's lineage in detail: each asset's latest event, checks, partitions filled, kinds.
GROUP_PATH = "/locations/customer_analytics/asset-groups/customers"
COHORT_LTV_PATH = "/assets/cohort_ltv?view=events"  # the events list, the latest materialization selected

# JavaScript run in the page: each returns true once the page shows what the screenshot needs.
GRAPH_READY = """(() => { const graph = document.querySelector('[data-svg-viewport="1"]');
  return !!graph && %s.every(name => graph.innerText.includes(name)); })()""" % json.dumps(GROUPS)
GROUP_READY = """(() => { const graph = document.querySelector('[data-svg-viewport="1"]');
  return !!graph && ['customer_clv', 'customer_rfm', 'Latest event'].every(name => graph.innerText.includes(name)); })()"""
# Clicks the first button showing this Material icon (the UI's icons carry their name as aria-label).
CLICK_ICON = """(icon => { const button = [...document.querySelectorAll('button')]
  .find(b => b.querySelector('[aria-label="' + icon + '"]')); if (!button) return false; button.click(); return true; })"""
OPEN_HEATMAP = """(() => {
  const row = [...document.querySelectorAll('tr')].find(r => r.innerText.trim().startsWith('cohort_heatmap'));
  if (!row) return false;
  const button = [...row.querySelectorAll('*')].find(e => e.children.length === 0 && e.innerText && e.innerText.includes('Show Markdown'));
  if (!button) return false;
  button.click();
  return true; })()"""
HEATMAP_SHOWN = """[...document.querySelectorAll('img')].some(i => i.src.startsWith('data:image/png') && i.complete && i.naturalWidth > 0)"""


def find_browser() -> str:
    for name in BROWSERS:
        found = shutil.which(name)
        if found:
            return found
    sys.exit("screenshots: no headless browser found (tried " + ", ".join(BROWSERS) + "). Install the Debian "
             "package `chromium`: apt-get install -y chromium (as root; sudo apt-get install -y chromium otherwise).")


class Chromium:
    """Headless Chromium driven over the DevTools protocol on a pipe (`--remote-debugging-pipe`: fd 3 in, fd 4 out).

    The protocol is needed, not just `--screenshot`: the heatmap is Markdown metadata, which the UI shows only
    after a click on its "[Show Markdown]" button. Chromium runs in its own process group, stopped by its id.
    """

    def __init__(self, browser: str, profile: Path, width: int, height: int):
        self.width, self.height = width, height
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()
        # Park the child's ends above fd 4 so that the dup2 onto 3 and 4 below cannot clobber one of them.
        child_in, child_out = (fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (to_browser_r, from_browser_w))
        os.close(to_browser_r)
        os.close(from_browser_w)

        def wire_pipe():  # runs in the child before exec (and before close_fds, which keeps 3 and 4)
            os.dup2(child_in, 3)
            os.dup2(child_out, 4)

        argv = [browser, "--headless", "--remote-debugging-pipe", "--disable-gpu", "--hide-scrollbars",
                "--no-first-run", "--disable-dev-shm-usage", "--disable-extensions", f"--user-data-dir={profile}",
                f"--window-size={width},{height}", "about:blank"]
        if os.geteuid() == 0:
            argv.insert(1, "--no-sandbox")  # Chromium refuses to run as root with its sandbox
        self._log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
                                     preexec_fn=wire_pipe, pass_fds=(3, 4), start_new_session=True)
        os.close(child_in)
        os.close(child_out)
        self._buffer = b""
        self._next_id = 0
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        self.send("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}, session=True)

    def send(self, method: str, params: dict | None = None, *, session: bool = False, timeout: float = 60) -> dict:
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = self.session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            while b"\0" not in self._buffer:
                if time.monotonic() > deadline:
                    raise SystemExit(f"screenshots: Chromium did not answer {method} within {timeout:.0f} s")
                ready, _, _ = select.select([self._from_browser], [], [], 1.0)
                if ready:
                    chunk = os.read(self._from_browser, 1 << 20)
                    if not chunk:
                        raise SystemExit(f"screenshots: Chromium exited ({self.proc.poll()}):\n{self.output()}")
                    self._buffer += chunk
            raw, self._buffer = self._buffer.split(b"\0", 1)
            reply = json.loads(raw)
            if reply.get("id") == self._next_id:  # everything else is an event
                if "error" in reply:
                    raise SystemExit(f"screenshots: {method} failed: {reply['error']}")
                return reply.get("result", {})

    def navigate(self, url: str) -> None:
        self.send("Page.navigate", {"url": url}, session=True)

    def evaluate(self, expression: str):
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True}, session=True)
        return result.get("result", {}).get("value")

    def wait_for(self, expression: str, what: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not self.evaluate(expression):
            if time.monotonic() > deadline:
                failed = Path(tempfile.gettempdir()) / "screenshots-failed.png"
                self.screenshot(failed)
                text = (self.evaluate("document.body.innerText") or "")[:1500]
                raise SystemExit(f"screenshots: the page never showed {what} within {timeout:.0f} s "
                                 f"(page saved as {failed}); its text:\n{text}")
            time.sleep(0.25)

    def screenshot(self, path: Path) -> None:
        data = self.send("Page.captureScreenshot", {"format": "png"}, session=True)["data"]
        path.write_bytes(base64.b64decode(data))

    def output(self) -> str:
        self._log.seek(0)
        return self._log.read().decode(errors="replace")[-3000:]

    def close(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        for fd in (self._to_browser, self._from_browser):
            os.close(fd)
        self._log.close()


def colours(path: Path) -> int:
    """Distinct colours in the picture: a blank or loading page has a handful."""
    from PIL import Image

    with Image.open(path) as image:
        found = image.convert("RGB").getcolors(maxcolors=1 << 20)
    return len(found) if found is not None else 1 << 20


def capture_pages(browser: str, base_url: str, out: Path, *, width: int, height: int, settle: float) -> list[Path]:
    with tempfile.TemporaryDirectory(prefix="ca_chromium_") as profile:
        chromium = Chromium(browser, Path(profile), width, height)
        try:
            graph = out / "asset-graph.png"
            chromium.navigate(base_url + ASSET_GRAPH_PATH)
            chromium.wait_for(GRAPH_READY, "the asset graph's group nodes")
            time.sleep(settle)  # the graph zooms to fit after its layout: let the animation end
            chromium.screenshot(graph)

            group = out / "asset-group-customers.png"
            chromium.navigate(base_url + GROUP_PATH)
            chromium.wait_for(GROUP_READY, "the customers group's asset nodes")
            time.sleep(settle)
            # The graph opens fitted to its width, cut at top and bottom: a few steps out show it whole.
            for _ in range(6):
                chromium.evaluate(CLICK_ICON + "('zoom_out')")
                time.sleep(0.5)
            time.sleep(settle / 2)
            chromium.screenshot(group)

            heatmap = out / "cohort-ltv-latest.png"
            chromium.navigate(base_url + COHORT_LTV_PATH)
            chromium.wait_for(OPEN_HEATMAP, "cohort_ltv's cohort_heatmap metadata row")
            chromium.wait_for(HEATMAP_SHOWN, "the cohort heatmap image")
            time.sleep(settle / 2)  # the dialog fades in
            chromium.screenshot(heatmap)
        finally:
            chromium.close()
    for path in (graph, group, heatmap):
        if colours(path) < 64:
            raise SystemExit(f"screenshots: {path} looks blank ({colours(path)} colours): a loading page?")
    return [graph, group, heatmap]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "docs" / "screenshots", help="folder for the PNGs")
    parser.add_argument("--pg-url", default=os.environ.get("CUSTOMER_ANALYTICS_TEST_PG_URL") or None,
                        help="PostgreSQL (SQLAlchemy URL) for Dagster's storage and the warehouse; default SQLite")
    parser.add_argument("--customers", type=int, default=800, help="sample customers (default 800)")
    parser.add_argument("--months", type=int, choices=range(1, 13), default=6, metavar="N",
                        help="sample months from 2025-01, all materialized (default 6)")
    parser.add_argument("--base-url", default=None,
                        help="capture a webserver that is already running (with materialized assets) instead")
    parser.add_argument("--width", type=int, default=1600)
    parser.add_argument("--height", type=int, default=1000)
    parser.add_argument("--settle", type=float, default=3.0, help="seconds to let a page's animations end")
    args = parser.parse_args(argv)

    browser = find_browser()
    args.out.mkdir(parents=True, exist_ok=True)
    # SIGTERM ends the script like Ctrl-C: the services and the browser are stopped on the way out.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    started = time.perf_counter()
    shots = dict(width=args.width, height=args.height, settle=args.settle)
    if args.base_url:
        paths = capture_pages(browser, args.base_url.rstrip("/"), args.out, **shots)
    else:
        last = f"2025-{args.months:02d}"
        with tempfile.TemporaryDirectory(prefix="ca_screenshots_") as tmp, \
                DagsterServices(pg_url=args.pg_url, workdir=Path(tmp) / "services", daemon=False,
                                sample={"customers": args.customers, "months": args.months, "start": "2025-01"}) as services:
            print(f"webserver {services.base_url}; materializing 2025-01 … {last}", flush=True)
            services.cli("materialize", "--from", "2025-01", "--to", last)
            # The UI greets a browser on 127.0.0.1 with a "Join the Dagster community" dialog until this is set.
            services.graphql("mutation { setNuxSeen }")
            paths = capture_pages(browser, services.base_url, args.out, **shots)
    for path in paths:
        print(f"  {path}")
    print(f"done in {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
