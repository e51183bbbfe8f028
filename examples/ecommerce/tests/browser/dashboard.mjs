// Opens the dashboard in headless Chromium (Debian's /usr/bin/chromium via
// playwright-core, which never downloads a browser), checks that it lists
// the services, tells the Rust test it is ready, waits for a breaker to show
// "open", and writes a screenshot.
//
//   node dashboard.mjs <dashboard url> <screenshot path>
//
// Protocol on stdout (read by tests/dashboard.rs): "services <n>" once the
// page lists the services, then "breaker-open <caller->callee>" once a breaker
// shows open, then "screenshot <path>". Any failure exits non-zero.
import { chromium } from "playwright-core";

const [url, shot] = process.argv.slice(2);
if (!url || !shot) {
  console.error("usage: node dashboard.mjs <url> <screenshot>");
  process.exit(2);
}
const executablePath = process.env.CHROMIUM || "/usr/bin/chromium";
const browser = await chromium.launch({
  executablePath,
  headless: true,
  args: [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
});
try {
  const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  await page.goto(url, { waitUntil: "domcontentloaded" });
  // The SSE stream fills the tables: wait for all seven services.
  await page.waitForFunction(
    () => document.querySelectorAll("#services tbody tr[data-service]").length >= 7,
    null,
    { timeout: 30000 },
  );
  const names = await page.$$eval("#services tbody tr[data-service]", (rows) =>
    rows.map((r) => r.dataset.service),
  );
  console.log("services " + names.length + " " + names.join(","));
  // The Rust side now trips a breaker; the page must show it without a reload.
  const open = await page.waitForFunction(
    () => {
      for (const row of document.querySelectorAll("#breakers tbody tr[data-breaker]")) {
        if (row.querySelector(".pill.open")) return row.dataset.breaker;
      }
      return null;
    },
    null,
    { timeout: 60000, polling: 100 },
  );
  console.log("breaker-open " + (await open.jsonValue()));
  await page.screenshot({ path: shot, fullPage: true });
  console.log("screenshot " + shot);
  if (errors.length) {
    console.error("page errors: " + errors.join("; "));
    process.exit(1);
  }
} finally {
  await browser.close();
}
