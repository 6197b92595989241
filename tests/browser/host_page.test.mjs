// wopigate's host page (/host) in headless Chromium (Debian's chromium, driven by playwright-core).
//
// The real wopigate binary runs on 127.0.0.1 with a temporary data directory and one viewer whose
// discovery points at a small test WOPI client served here, on another origin. The client page
// receives the host page's form POST, calls CheckFileInfo as a real client would, and talks to
// the host page with PostMessages. A third origin, framed inside the client, forges messages the
// host page must ignore. A fourth plays the platform (close, versions and sharing pages).
//
// Run by scripts/browser-test.sh (from scripts/test.sh): WOPIGATE_BIN names the binary.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHmac, randomUUID } from 'node:crypto';
import { mkdtempSync, mkdirSync, writeFileSync, rmSync, copyFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const BINARY = process.env.WOPIGATE_BIN || join(ROOT, 'target', 'debug', 'wopigate');
const SHOTS = join(ROOT, 'target', 'browser');
const CALLER_SECRET = 'browser-test-caller-secret-' + randomUUID();
const TOKEN_SECRET = 'browser-test-token-secret-' + randomUUID();
const VIEWER_ID = randomUUID();

// ---------------------------------------------------------------------------------------------
// Small helpers

async function waitFor(what, fn, timeoutMs = 10000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await fn();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function listen(handler) {
  return new Promise((resolve) => {
    const server = createServer(handler);
    server.listen(0, '127.0.0.1', () => resolve({ server, origin: `http://127.0.0.1:${server.address().port}` }));
  });
}

function freePort() {
  return new Promise((resolve) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

function callerJwt(sub, name) {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const input = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64({ sub, name, exp: Math.floor(Date.now() / 1000) + 600 })}`;
  return `${input}.${createHmac('sha256', CALLER_SECRET).update(input).digest('base64url')}`;
}

const html = (s) => String(s).replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]);

// ---------------------------------------------------------------------------------------------
// The test WOPI client (its own origin): discovery, and the page the host page posts the token to.

const posts = []; // every form POST the client received: { query, fields, headers }
const testRequests = []; // every request any test server received: URL and Referer

function record(name, req) {
  testRequests.push({ server: name, url: req.url, referer: req.headers.referer || null });
}

function discoveryXml(origin) {
  const urlsrc = `${origin}/client/open?`;
  return `<?xml version="1.0" encoding="utf-8"?>
<wopi-discovery><net-zone name="external-http"><app name="Test client">
<action name="view" ext="docx" urlsrc="${urlsrc}"/>
<action name="edit" ext="docx" urlsrc="${urlsrc}"/>
</app></net-zone></wopi-discovery>`;
}

function clientPage(info, action, evilOrigin) {
  // The client talks to PostMessageOrigin only, as Office, Collabora and ONLYOFFICE do.
  return `<!DOCTYPE html><html><head><meta charset="utf-8"><title>Test WOPI client</title>
<style>
  body { margin: 0; font-family: system-ui, sans-serif; background: #e9ecef; color: #212529; }
  header { display: flex; gap: 1rem; align-items: center; padding: .6rem 1rem; background: #2b579a; color: #fff; }
  header b { font-size: 1.05rem; } header span { opacity: .85; } header .right { margin-left: auto; }
  button { font: inherit; border: 1px solid #ffffff88; background: transparent; color: #fff; border-radius: 4px; padding: .2rem .7rem; }
  .sheet { width: 640px; margin: 2rem auto; padding: 3rem 4rem; background: #fff; box-shadow: 0 1px 4px #0003; min-height: 420px; }
  .sheet h1 { font-size: 1.5rem; margin-top: 0; } .muted { color: #6c757d; font-size: .9rem; }
  #evil { display: none; }
</style></head><body>
<header><b>Test WOPI client</b><span>${html(info.BaseFileName)}</span><span>${html(action)}</span>
<span class="right">${html(info.UserFriendlyName)}</span><button id="close">Close</button></header>
<div class="sheet">
  <h1>${html(info.BaseFileName)}</h1>
  <p>This page stands in for Collabora Online, ONLYOFFICE Docs or Office for the web. wopigate's host
  page posted the access token into this frame; the client then called CheckFileInfo with it.</p>
  <p class="muted">PostMessageOrigin: ${html(info.PostMessageOrigin)} · status: <span id="status">waiting for the host</span></p>
</div>
<iframe id="evil" src="${evilOrigin}/evil"></iframe>
<script>
  const HOST = ${JSON.stringify(info.PostMessageOrigin)};
  window.framed = window.top !== window && window.parent === window.top;
  window.received = [];
  window.addEventListener('message', (e) => {
    if (e.origin !== HOST || e.source !== window.parent) return;
    const data = typeof e.data === 'string' ? JSON.parse(e.data) : e.data;
    window.received.push(data);
    if (data.MessageId === 'Host_PostmessageReady') document.getElementById('status').textContent = 'host ready';
  });
  window.send = (id, values) =>
    window.parent.postMessage(JSON.stringify({ MessageId: id, SendTime: Date.now(), Values: values || {} }), HOST);
  document.getElementById('close').addEventListener('click', () => window.send('UI_Close', { EverModified: false }));
  window.send('App_LoadingStatus', { Status: 'Frame_Ready' });
</script></body></html>`;
}

async function clientHandler(req, res) {
  record('client', req);
  const url = new URL(req.url, 'http://client');
  if (req.method === 'GET' && url.pathname === '/hosting/discovery') {
    res.writeHead(200, { 'Content-Type': 'text/xml' });
    res.end(discoveryXml(clientOrigin));
    return;
  }
  if (req.method === 'POST' && url.pathname === '/client/open') {
    const fields = Object.fromEntries(new URLSearchParams(await readBody(req)));
    posts.push({ query: Object.fromEntries(url.searchParams), fields, headers: req.headers });
    const wopiSrc = url.searchParams.get('WOPISrc');
    const info = await (await fetch(`${wopiSrc}?access_token=${encodeURIComponent(fields.access_token)}`)).json();
    res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
    res.end(clientPage(info, info.UserCanWrite ? 'editing' : 'viewing', evilOrigin));
    return;
  }
  res.writeHead(404);
  res.end();
}

// A third origin, framed by the client page: it can reach the host page's window and forge.
function evilHandler(req, res) {
  record('evil', req);
  res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
  res.end(`<!DOCTYPE html><script>
    window.forge = (message) => window.top.postMessage(JSON.stringify(message), '*');
  </script>`);
}

// The platform: where UI_Close, UI_FileVersions and UI_Sharing lead.
function platformHandler(req, res) {
  record('platform', req);
  res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
  res.end(`<!DOCTYPE html><title>platform ${html(req.url)}</title><p>platform page ${html(req.url)}</p>`);
}

// ---------------------------------------------------------------------------------------------
// wopigate itself

async function startWopigate(extraEnv) {
  const port = await freePort();
  const data = mkdtempSync(join(tmpdir(), 'wopigate-browser-'));
  mkdirSync(join(data, 'alice'));
  writeFileSync(join(data, 'alice', 'report.docx'), 'a document');
  const address = `http://127.0.0.1:${port}`;
  const env = {
    PATH: process.env.PATH,
    WOPIGATE_BIND: `127.0.0.1:${port}`,
    WOPIGATE_PUBLIC_URL: address,
    WOPIGATE_DATA_DIR: data,
    WOPIGATE_TOKEN_SECRET: TOKEN_SECRET,
    WOPIGATE_CALLER_JWT_SECRET: CALLER_SECRET,
    WOPIGATE_VIEWERS: JSON.stringify([{ id: VIEWER_ID, name: 'Test client', discovery: `${clientOrigin}/hosting/discovery` }]),
    WOPIGATE_LOG_FORMAT: 'json',
    ...extraEnv,
  };
  const child = spawn(BINARY, [], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  child.stdout.on('data', (c) => (log += c));
  child.stderr.on('data', (c) => (log += c));
  const exited = new Promise((resolve) => child.on('exit', resolve));
  await waitFor('wopigate to be ready (discovery loaded)', async () => {
    if (child.exitCode !== null) throw new Error(`wopigate exited early:\n${log}`);
    try {
      return (await fetch(`${address}/readyz`)).status === 200;
    } catch {
      return false;
    }
  });
  return {
    address,
    log: () => log,
    async stop() {
      child.kill('SIGTERM');
      await exited;
      rmSync(data, { recursive: true, force: true });
      return log;
    },
    async open(action) {
      const response = await fetch(`${address}/api/v4/file/viewerSession`, {
        method: 'PUT',
        headers: { Authorization: `Bearer ${callerJwt('alice', 'Alice Example')}`, 'Content-Type': 'application/json' },
        body: JSON.stringify({ uri: 'cloudreve://my/report.docx', viewer_id: VIEWER_ID, preferred_action: action }),
      });
      const envelope = await response.json();
      assert.equal(envelope.code, 0, JSON.stringify(envelope));
      return envelope.data;
    },
  };
}

// ---------------------------------------------------------------------------------------------

let clientOrigin, evilOrigin, platformOrigin;
let servers = [];
let browser;
let gate; // wopigate with the platform's close, versions and sharing pages
let plainGate; // wopigate with none of them

before(async () => {
  const client = await listen((req, res) => clientHandler(req, res).catch((e) => { res.writeHead(500); res.end(String(e)); }));
  const evil = await listen(evilHandler);
  const platform = await listen(platformHandler);
  servers = [client.server, evil.server, platform.server];
  [clientOrigin, evilOrigin, platformOrigin] = [client.origin, evil.origin, platform.origin];
  [gate, plainGate] = await Promise.all([
    startWopigate({
      WOPIGATE_CLOSE_URL: `${platformOrigin}/closed`,
      WOPIGATE_PLATFORM_URL: `${platformOrigin}/`,
      WOPIGATE_VERSIONS_URL: `${platformOrigin}/versions/{file_id}`,
      WOPIGATE_SHARING_URL: `${platformOrigin}/share/{file_id}`,
    }),
    startWopigate({}),
  ]);
  browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    headless: true,
    // Playwright gives every launch a fresh, empty --user-data-dir. Without the networking
    // flags Chromium's own background connections are refused on this closed network.
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  mkdirSync(SHOTS, { recursive: true });
});

after(async () => {
  await browser?.close();
  await Promise.all([gate?.stop(), plainGate?.stop()]);
  for (const s of servers) s.close();
});

/** A fresh page that records console errors and every URL it requests. */
async function newPage() {
  const context = await browser.newContext({ viewport: { width: 1280, height: 720 } });
  const page = await context.newPage();
  const problems = [];
  const urls = [];
  page.on('console', (m) => m.type() === 'error' && !/favicon/.test(m.location().url || '') && problems.push(m.text()));
  page.on('pageerror', (e) => problems.push(String(e)));
  context.on('request', (r) => urls.push(r.url()));
  return { context, page, problems, urls };
}

function clientFrame(page) {
  return waitFor('the client frame', () =>
    page.frames().find((f) => f.url().startsWith(`${clientOrigin}/client/open`)));
}

async function evilFrame(page) {
  return waitFor('the third-origin frame', () => page.frames().find((f) => f.url().startsWith(`${evilOrigin}/evil`)));
}

const readyCount = (frame) =>
  frame.evaluate(() => window.received.filter((m) => m.MessageId === 'Host_PostmessageReady').length);

test('the client gets the token by form POST, the handshake works, other origins are ignored, UI_Close goes to WOPIGATE_CLOSE_URL', async () => {
  const session = await gate.open('edit');
  const token = session.session.access_token;
  assert.match(session.host_url, new RegExp(`^${gate.address}/host#wopi_src=`));
  const postsBefore = posts.length;
  const { context, page, problems, urls } = await newPage();
  await page.goto(session.host_url);

  // The page took the session out of the address bar and history at once.
  assert.equal(new URL(page.url()).hash, '');
  assert.equal(await page.evaluate(() => location.hash), '');

  // The client received the POST: the token as a form field, never in a URL; no Referer.
  const frame = await clientFrame(page);
  await waitFor('the POST', () => posts.length > postsBefore);
  const post = posts[posts.length - 1];
  assert.equal(post.fields.access_token, token);
  assert.equal(post.fields.access_token_ttl, String(session.session.expires));
  assert.equal(post.headers['sec-fetch-dest'], 'iframe', 'posted into a frame');
  assert.equal(post.headers.referer, undefined, 'no Referer leaves the host page');
  assert.equal(post.query.WOPISrc.startsWith(`${gate.address}/wopi/files/`), true);
  assert.equal(await frame.evaluate(() => window.framed), true, 'the client page is framed by the host page');

  // App_LoadingStatus → Host_PostmessageReady, in WOPI's envelope, to the client's origin only.
  await frame.waitForFunction(() => window.received.some((m) => m.MessageId === 'Host_PostmessageReady'));
  const ready = await frame.evaluate(() => window.received.find((m) => m.MessageId === 'Host_PostmessageReady'));
  assert.equal(typeof ready.SendTime, 'number');
  assert.deepEqual(ready.Values, {});
  const frameAttrs = await page.$eval('#wopi-client', (f) => ({ allow: f.getAttribute('allow'), sandbox: f.getAttribute('sandbox') }));
  assert.equal(frameAttrs.allow, `clipboard-read ${clientOrigin}; clipboard-write ${clientOrigin}; fullscreen ${clientOrigin}`);
  assert.deepEqual(frameAttrs.sandbox.split(' ').sort(), ['allow-downloads', 'allow-forms', 'allow-modals', 'allow-popups',
    'allow-popups-to-escape-sandbox', 'allow-same-origin', 'allow-scripts', 'allow-top-navigation-by-user-activation']);
  await page.screenshot({ path: join(SHOTS, 'host-page.png') });

  // A third origin forges messages: no reply, no navigation.
  const evil = await evilFrame(page);
  const readies = await readyCount(frame);
  await evil.evaluate(() => window.forge({ MessageId: 'App_LoadingStatus', SendTime: Date.now(), Values: { Status: 'Frame_Ready' } }));
  await evil.evaluate(() => window.forge({ MessageId: 'UI_Close', SendTime: Date.now(), Values: {} }));
  await sleep(700);
  assert.ok(page.url().startsWith(`${gate.address}/host`), `a forged UI_Close is ignored (now at ${page.url()})`);
  assert.equal(await readyCount(frame), readies, 'no Host_PostmessageReady for a forged message');
  // Nonsense from the client itself is ignored too.
  await frame.evaluate(() => window.parent.postMessage('not json', '*'));
  await frame.evaluate(() => window.parent.postMessage(JSON.stringify({ Values: {} }), '*'));

  // Another App_LoadingStatus (Document_Loaded) is answered as well.
  await frame.evaluate(() => window.send('App_LoadingStatus', { Status: 'Document_Loaded' }));
  await waitFor('a second reply', async () => (await readyCount(frame)) === readies + 1);

  // UI_FileVersions and UI_Sharing open the platform's pages for this file.
  const fid = new URL(post.query.WOPISrc).pathname.split('/').pop();
  for (const [id, path] of [['UI_FileVersions', 'versions'], ['UI_Sharing', 'share']]) {
    const opened = context.waitForEvent('page');
    await frame.evaluate((id) => window.send(id, {}), id);
    const popup = await opened;
    await popup.waitForLoadState();
    assert.equal(popup.url(), `${platformOrigin}/${path}/${fid}`);
    assert.equal(await popup.evaluate(() => window.opener), null, 'the platform page cannot reach the host page');
    await popup.close();
  }

  // UI_Close (the client's close button) → WOPIGATE_CLOSE_URL.
  await frame.click('#close');
  await page.waitForURL(`${platformOrigin}/closed`);

  assert.deepEqual(problems, [], 'no console errors (a CSP violation would show here)');
  assert.ok(!urls.some((u) => u.includes(token)), 'the token is in no URL the browser requested');
  assert.ok(!testRequests.some((r) => r.server !== 'client' && r.url.includes(token)));
  assert.ok(!testRequests.some((r) => r.referer && r.referer.includes(gate.address)), 'no Referer from the host page');
  await context.close();
});

test('opened without a session (HostViewUrl), the page sends the person to the platform', async () => {
  const session = await gate.open('view');
  const fid = new URL(session.wopi_src).searchParams.get('WOPISrc').split('/').pop();
  const info = await (await fetch(`${gate.address}/wopi/files/${fid}?access_token=${session.session.access_token}`)).json();
  assert.equal(info.HostViewUrl, `${gate.address}/host/${fid}?action=view`);
  assert.equal(info.PostMessageOrigin, gate.address);
  const { context, page, problems } = await newPage();
  await page.goto(info.HostViewUrl);
  assert.equal(await page.textContent('h1'), 'Open this document from your file platform');
  assert.equal(await page.getAttribute('#message a', 'href'), `${platformOrigin}/`);
  assert.equal(await page.$('iframe'), null);
  await page.screenshot({ path: join(SHOTS, 'host-page-without-session.png') });
  // A damaged link says so, and frames nothing.
  await page.goto(`${gate.address}/host#wopi_src=javascript%3Aalert(1)&access_token=x`);
  assert.equal(await page.textContent('h1'), 'This link cannot open a document');
  assert.equal(await page.$('iframe'), null);
  assert.deepEqual(problems, []);
  await context.close();
});

test('without WOPIGATE_CLOSE_URL, UI_Close goes back to the page that opened the document', async () => {
  const session = await plainGate.open('view');
  const { context, page, problems } = await newPage();
  await page.goto(`${platformOrigin}/files`);
  await page.goto(session.host_url);
  const frame = await clientFrame(page);
  await frame.waitForFunction(() => window.received.some((m) => m.MessageId === 'Host_PostmessageReady'));
  assert.equal(await frame.evaluate(() => document.querySelector('header').textContent.includes('viewing')), true);
  await frame.evaluate(() => window.send('UI_Close', {}));
  await page.waitForURL(`${platformOrigin}/files`);
  assert.deepEqual(problems, []);
  await context.close();
});

test('no token reaches wopigate\'s log', async () => {
  // Every session these tests opened: the tokens went through the browser, never to a log.
  const tokens = posts.map((p) => p.fields.access_token);
  assert.ok(tokens.length >= 2);
  for (const log of [gate.log(), plainGate.log()]) {
    assert.match(log, /"route":"\/host"/, 'the page was served');
    for (const token of tokens) assert.ok(!log.includes(token), 'a token in the log');
  }
  if (process.env.WOPIGATE_UPDATE_SCREENSHOT) {
    copyFileSync(join(SHOTS, 'host-page.png'), join(ROOT, 'docs', 'host-page.png'));
  }
});
