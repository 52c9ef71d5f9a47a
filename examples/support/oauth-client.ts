// An MCP client's side of OAuth for tests: an in-memory OAuthClientProvider for the SDK client
// (test/support/oauth-provider.ts), and a scripted browser that follows an authorization
// request through Gatehouse's PIN login.
import { formField, idpChoices } from '../../test/login/support.ts';
import { TestOAuthProvider as InMemoryOAuthProvider } from '../../test/support/oauth-provider.ts';
import { type Browser, cookieBrowser, type DemoHarness } from './demo.ts';

/** A loopback redirect URI, as desktop MCP clients register; nothing listens there. */
export const CLIENT_REDIRECT = 'http://127.0.0.1:1/oauth/callback';

/** An MCP client's OAuth state, in memory; the test follows its authorization URL itself. */
export class TestOAuthProvider extends InMemoryOAuthProvider {
  constructor() {
    super({ redirectUris: [CLIENT_REDIRECT], clientName: 'flow2 test' });
  }
}

/**
 * Plays the person's browser from the MCP server's /authorize: follows redirects, answers
 * Gatehouse's login with the printed PIN, stops at the redirect to the MCP client.
 */
export async function browseAuthorization(
  h: DemoHarness,
  start: URL,
  email: string,
): Promise<{ status: number; location: string | null; text: string }> {
  const browser: Browser = cookieBrowser(h.demo.listen);
  let next = start.href;
  for (let step = 0; step < 15; step++) {
    const page = await browser(next);
    const location = page.headers.get('location');
    if (page.status >= 300 && page.status < 400 && location) {
      const target = new URL(location, next).href;
      if (target.startsWith(CLIENT_REDIRECT))
        return { status: page.status, location: target, text: page.text };
      next = target;
      continue;
    }
    if (page.status === 200 && /name="flow"/.test(page.text)) {
      const flow = formField(page.text, 'flow');
      const [idp] = idpChoices(page.text);
      if (idp) await browser(`${h.demo.teamDomain}/cdn-cgi/access/idp`, { form: { flow, idp } });
      const before = pins(h, email).length;
      await browser(`${h.demo.teamDomain}/cdn-cgi/access/otp`, { form: { flow, email } });
      const pin = await waitFor(() => (pins(h, email).length > before ? pins(h, email).at(-1) : undefined));
      const done = await browser(`${h.demo.teamDomain}/cdn-cgi/access/otp/verify`, { form: { flow, pin } });
      next = new URL(done.headers.get('location')!, next).href;
      continue;
    }
    return { status: page.status, location, text: page.text };
  }
  throw new Error('too many redirects');
}

const pins = (h: DemoHarness, email: string) =>
  [...h.output().matchAll(/one-time PIN for (\S+): (\d{6})/g)]
    .filter((m) => m[1] === email)
    .map((m) => m[2]!);

async function waitFor<T>(probe: () => T | undefined): Promise<T> {
  for (let i = 0; i < 100; i++) {
    const value = probe();
    if (value !== undefined) return value;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error('timed out');
}
