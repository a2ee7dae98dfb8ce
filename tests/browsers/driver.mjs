// Drives Debian's chromium (CDP) or firefox-esr (WebDriver BiDi) with puppeteer-core, for
// tests/browsers/node_driver.py. One JSON request per stdin line, one JSON answer per stdout line:
//   {"id": 1, "op": "open", "url": "...", "timeout": 20}      -> {"id": 1, "value": "<page id>"}
//   {"id": 2, "op": "eval", "page": "p1", "js": "<expression>"} -> {"id": 2, "value": "<JSON text>"}
//   ops: open, eval, click, popup, url, log, close, quit; a failure answers {"id", "error"}.
// The first line written is {"ready": true, "version": "..."} once the browser runs.
// Why a pipe and not a port: nothing else on the machine can talk to this browser.
import puppeteer from 'puppeteer-core';
import readline from 'node:readline';

const config = JSON.parse(process.argv[2]);
const pages = new Map(); // id -> {page, popups: [ids], waiters: [fn], log: [text]}
let counter = 0;

function write(message) {
  process.stdout.write(JSON.stringify(message) + '\n');
}

function track(page) {
  const id = `p${++counter}`;
  const entry = {page, popups: [], waiters: [], log: []};
  pages.set(id, entry);
  page.on('console', (message) => entry.log.push(`console.${message.type()}: ${message.text()}`));
  page.on('pageerror', (error) => entry.log.push(`pageerror: ${error.message ?? error}`));
  page.on('popup', (popup) => {
    if (!popup) return;
    entry.popups.push(track(popup));
    for (const wake of entry.waiters.splice(0)) wake();
  });
  return id;
}

function entryOf(id) {
  const entry = pages.get(id);
  if (!entry) throw new Error(`no page ${id}`);
  return entry;
}

const browser = await puppeteer.launch({
  browser: config.browser,
  protocol: config.browser === 'firefox' ? 'webDriverBiDi' : 'cdp',
  executablePath: config.executablePath,
  headless: true,
  pipe: config.browser !== 'firefox',
  args: config.args ?? [],
  ignoreDefaultArgs: config.ignoreDefaultArgs ?? false,
  extraPrefsFirefox: config.prefs ?? {},
  env: {...process.env, ...(config.env ?? {})},
  timeout: (config.timeout ?? 60) * 1000,
  protocolTimeout: (config.timeout ?? 60) * 1000,
  handleSIGINT: false, handleSIGTERM: false, handleSIGHUP: false,
});

const ops = {
  async open({url, timeout}) {
    const page = await browser.newPage();
    const id = track(page);
    page.setDefaultTimeout(timeout * 1000);
    try {
      await page.goto(url, {waitUntil: 'load', timeout: timeout * 1000});
    } catch (error) {
      pages.delete(id);
      await page.close().catch(() => {});
      throw error;
    }
    return id;
  },
  async eval({page, js}) {
    // JSON text both ways, so Chromium, Firefox and WebKit return exactly the same values.
    return await entryOf(page).page.evaluate(`(async () => JSON.stringify(await (${js})))()`);
  },
  async click({page, selector, timeout}) {
    // A real pointer event (CDP Input / BiDi input.performActions): the page gets a user activation.
    const target = await entryOf(page).page.waitForSelector(selector, {timeout: timeout * 1000});
    await target.click();
    return null;
  },
  async popup({page, timeout}) {
    const entry = entryOf(page);
    const deadline = Date.now() + timeout * 1000;
    while (entry.popups.length === 0) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no popup opened within ${timeout}s`);
      await new Promise((wake) => { entry.waiters.push(wake); setTimeout(wake, left); });
    }
    const id = entry.popups.shift();
    // A popup starts at about:blank; wait (within the timeout) until it shows what window.open asked for.
    const popup = entryOf(id).page;
    while (!popup.isClosed() && popup.url() === 'about:blank' && Date.now() < deadline) {
      await new Promise((wake) => setTimeout(wake, 50));
    }
    return id;
  },
  async url({page}) {
    const entry = entryOf(page);
    return entry.page.isClosed() ? null : entry.page.url();
  },
  async log({page}) {
    return entryOf(page).log;
  },
  async close({page}) {
    const entry = entryOf(page);
    pages.delete(page);
    if (!entry.page.isClosed()) await entry.page.close();
    return null;
  },
  async quit() {
    await browser.close();
    return null;
  },
};

write({ready: true, version: await browser.version()});
const lines = readline.createInterface({input: process.stdin});
for await (const line of lines) {
  const request = JSON.parse(line);
  try {
    write({id: request.id, value: await ops[request.op](request)});
  } catch (error) {
    write({id: request.id, error: String(error?.message ?? error)});
  }
  if (request.op === 'quit') break;
}
await browser.close().catch(() => {});
process.exit(0);
