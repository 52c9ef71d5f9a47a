// The demo end to end in headless Chromium: an MCP tool (flow 1) edits a wiki page as the demo
// user; then the person signs in to the wiki in a real browser with the PIN the demo printed and
// sees that page, its history naming them as the author.
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { type Browser as Chromium, chromium } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fetchVia } from './shared/connect.ts';
import { type DemoHarness, startDemoHarness } from './support/demo.ts';

const USER = 'demo@example.com';
let h: DemoHarness;
let chrome: Chromium;

beforeAll(async () => {
  h = await startDemoHarness(USER);
  chrome = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: [
      '--no-sandbox',
      '--disable-background-networking',
      '--host-resolver-rules=MAP *.localhost 127.0.0.1',
    ],
  });
});
afterAll(async () => {
  await chrome?.close();
  await h?.close();
});

describe('gatehouse demo in a browser', () => {
  it('shows the page an MCP tool edited, with the author, after a PIN login', async () => {
    const { token } = await h.login(`mcp.localhost:${h.port}`, USER);
    const client = new Client({ name: 'e2e', version: '1' });
    await client.connect(
      new StreamableHTTPClientTransport(new URL(h.demo.urls.mcp), {
        fetch: fetchVia(h.demo.listen),
        requestInit: { headers: { 'cf-access-token': token } },
      }),
    );
    const created = await client.callTool({
      name: 'wiki_create',
      arguments: { slug: 'standup', title: 'Stand-up notes', body: 'Written by the assistant' },
    });
    expect(created.isError).toBeFalsy();
    await client.close();

    const page = await (await chrome.newContext()).newPage();
    await page.goto(`${h.demo.urls.wiki}/pages/standup`);
    expect(new URL(page.url()).origin).toBe(h.demo.teamDomain);
    await page.getByRole('button', { name: 'Sign in with a one-time PIN' }).click();
    await page.getByLabel('Email address').fill(USER);
    const printed = h.output().split('one-time PIN for').length;
    await page.getByRole('button', { name: 'Send me a code' }).click();
    let pin: string | undefined;
    for (let i = 0; i < 100 && !pin; i++) {
      if (h.output().split('one-time PIN for').length > printed) {
        pin = [...h.output().matchAll(/one-time PIN for \S+: (\d{6})/g)].at(-1)![1];
      } else await new Promise((resolve) => setTimeout(resolve, 50));
    }
    await page.getByLabel('One-time PIN').fill(pin!);
    await page.getByRole('button', { name: 'Sign in' }).click();

    await page.waitForURL(`${h.demo.urls.wiki}/pages/standup`);
    await expect(page.locator('h1').textContent()).resolves.toBe('Stand-up notes');
    await expect(page.locator('#me').textContent()).resolves.toBe(USER);
    await expect(page.locator('#history .author').allTextContents()).resolves.toEqual([USER]);

    // The person edits the page in the browser too (a same-origin form post through Gatehouse).
    await page.getByRole('link', { name: 'Edit' }).click();
    await page.getByLabel('body').fill('Written by the assistant, checked by a person');
    await page.getByRole('button', { name: 'Save' }).click();
    await page.waitForURL(`${h.demo.urls.wiki}/pages/standup`);
    await expect(page.locator('#body').textContent()).resolves.toBe(
      'Written by the assistant, checked by a person',
    );
    await expect(page.locator('#history .author').allTextContents()).resolves.toEqual([USER, USER]);
  });
});
