// Headless Chromium for the browser tests: where it is, how it is started
// here (no sandbox as root, no background networking on a closed network),
// the device shapes, and a page that records every problem a user could
// meet (console errors, page errors, failed requests).
import { existsSync } from "node:fs";
import { chromium } from "playwright-core";

export const CHROMIUM = process.env.BANDSYNC_CHROMIUM || "/usr/bin/chromium";
export const ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];
export const DEVICES = {
  phone: { viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true },
  landscape: { viewport: { width: 844, height: 390 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true },
  tablet: { viewport: { width: 820, height: 1180 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true },
  desktop: { viewport: { width: 1280, height: 800 }, deviceScaleFactor: 1 },
};

/** Launches Debian's Chromium with ARGS plus extra; fails clearly when it is missing. */
export async function launchChromium(extra = []) {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`${CHROMIUM} not found: install Debian's chromium (apt-get install -y chromium; scripts/test.sh does it under CI=true)`);
  }
  return chromium.launch({ executablePath: CHROMIUM, headless: true, args: [...ARGS, ...extra] });
}

/**
 * A device: its own browser context (own window, own storage) of the given
 * kind, opened at url. The context is pushed on contexts for the caller to
 * close; problems receives every console error, page error and HTTP error,
 * and with failedRequests every request that got no answer at all.
 */
export async function openDevice(browser, { kind, label, url, contexts, problems, failedRequests = false }) {
  const ctx = await browser.newContext(DEVICES[kind]);
  contexts.push(ctx);
  const page = await ctx.newPage();
  page.on("console", (m) => {
    if (m.type() === "error") problems.push(`${label} console: ${m.text()}`);
  });
  page.on("pageerror", (e) => problems.push(`${label} page error: ${e.message}`));
  page.on("response", (r) => {
    if (r.status() >= 400) problems.push(`${label} ${r.status()} ${r.url()}`);
  });
  if (failedRequests) {
    page.on("requestfailed", (r) => problems.push(`${label} request failed: ${r.url()} ${r.failure()?.errorText}`));
  }
  await page.goto(url);
  return page;
}

/** Joins a session from the web app's join form, as a musician would. */
export async function joinPage(page, sessionId, name, role = "follower") {
  await page.fill("#session-input", sessionId);
  await page.fill("#name-input", name);
  await page.check(`input[name="role"][value="${role}"]`);
  await page.click("#join-btn");
  await page.waitForSelector('body[data-view="session"]', { timeout: 5000 });
  await page.waitForSelector('#conn[data-state="connected"]');
}

/**
 * A page's local clock (performance.timeOrigin + performance.now(), the
 * SDK's clock) minus the machine's wall clock, averaged over `reads` reads.
 * The pages live in different renderer processes whose timeOrigins can
 * differ by a fraction of a millisecond; this puts them on one time base.
 */
export async function clockSkew(page, reads = 200) {
  const xs = await page.evaluate(async (n) => {
    const out = [];
    for (let i = 0; i < n; i++) {
      out.push(performance.timeOrigin + performance.now() - Date.now());
      await new Promise((r) => setTimeout(r, 0.3 + Math.random()));
    }
    return out;
  }, reads);
  return xs.reduce((a, b) => a + b, 0) / xs.length;
}
