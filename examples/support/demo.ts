// Runs the whole demo in the test process on free ports (PostgreSQL when the suite has one),
// catches the PINs it prints, and signs a person in through the real one-time-PIN login.
import { type RunningDemo, startDemo } from '../../src/cli/demo.ts';
import { formField, idpChoices } from '../../test/login/support.ts';
import { Browser as WireBrowser } from '../../test/support/browser.ts';
import { createTestDatabase, type TestDatabase } from '../../test/support/databases.ts';
import { freePort } from '../../test/support/ports.ts';

export interface DemoHarness {
  demo: RunningDemo;
  port: number;
  ports: { wiki: number; dashboard: number; mcp: number; mcpSaas: number };
  database: TestDatabase;
  output: () => string;
  /**
   * Signs `email` in at `appHost` with the printed PIN; returns the app token Gatehouse handed
   * over, and the browser after following the hand-off (it holds the app's CF_Authorization).
   */
  login(appHost: string, email: string): Promise<{ token: string; browser: Browser; landed: Page }>;
  close(): Promise<void>;
}

export async function startDemoHarness(user = 'alice@example.com'): Promise<DemoHarness> {
  const kind = process.env.GATEHOUSE_TEST_DATABASE_URL ? 'postgres' : 'sqlite';
  const database = await createTestDatabase(kind);
  const port = await freePort();
  const ports = {
    wiki: await freePort(),
    dashboard: await freePort(),
    mcp: await freePort(),
    mcpSaas: await freePort(),
  };
  let output = '';
  const demo = await startDemo({
    port,
    dataDir: database.dataDir,
    databaseUrl: database.url,
    user,
    wikiPort: ports.wiki,
    dashboardPort: ports.dashboard,
    mcpPort: ports.mcp,
    mcpSaasPort: ports.mcpSaas,
    logLevel: process.env.GATEHOUSE_TEST_LOG_LEVEL ?? 'silent',
    print: (text) => {
      output += text;
    },
  });

  const pinsFor = (email: string) =>
    [...output.matchAll(/one-time PIN for (\S+): (\d{6})/g)].filter((m) => m[1] === email);
  const nextPin = async (email: string, seen: number): Promise<string> => {
    for (let i = 0; i < 100; i++) {
      const pins = pinsFor(email);
      if (pins.length > seen) return pins.at(-1)![2]!;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    throw new Error(`no PIN printed for ${email}`);
  };

  return {
    demo,
    port,
    ports,
    database,
    output: () => output,
    async login(appHost, email) {
      const browser = cookieBrowser(demo.listen);
      const start = await browser(`http://${appHost}/`);
      if (start.status !== 302) throw new Error(`expected a redirect to the login, got ${start.status}`);
      const picker = await browser(start.headers.get('location')!);
      const flow = formField(picker.text, 'flow');
      const [idp] = idpChoices(picker.text);
      if (idp) await browser(`${demo.teamDomain}/cdn-cgi/access/idp`, { form: { flow, idp } });
      const seen = pinsFor(email).length;
      await browser(`${demo.teamDomain}/cdn-cgi/access/otp`, { form: { flow, email } });
      const pin = await nextPin(email, seen);
      const done = await browser(`${demo.teamDomain}/cdn-cgi/access/otp/verify`, { form: { flow, pin } });
      const location = done.headers.get('location');
      const token = location ? new URL(location).searchParams.get('token') : null;
      if (!token)
        throw new Error(`login did not hand over a token (${done.status}): ${done.text.slice(0, 200)}`);
      const handOff = await browser(location!);
      const landed = await browser(new URL(handOff.headers.get('location')!, location!).href);
      return { token, browser, landed };
    },
    async close() {
      await demo.close();
      await database.cleanup();
    },
  };
}

export interface Page {
  status: number;
  headers: Headers;
  text: string;
}
export type Browser = (
  url: string,
  send?: { form?: Record<string, string>; json?: unknown },
) => Promise<Page>;

/** A browser on the wire (test/support/browser.ts) whose connections go to `listen`. */
export function cookieBrowser(listen: string): Browser {
  const browser = new WireBrowser(listen);
  return (url, send) => browser.request(url, send);
}
