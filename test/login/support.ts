// A gateway with the team-domain login, a real SMTP server receiving the PINs, the management
// API to create apps, policies and identity providers, and a small cookie-keeping HTTP client
// that behaves like a browser on the wire (no redirects followed unless asked).
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { SMTPServer } from 'smtp-server';
import { createApiToken } from '../../src/api/api-tokens.ts';
import type { LoginOptions } from '../../src/login/plugin.ts';
import { tempDir } from '../support/databases.ts';
import { startTestGateway, type TestGateway } from '../support/gateway.ts';
import { freePort } from '../support/ports.ts';

export interface Mailbox {
  url: string;
  /** Resolves with the next PIN mailed to `to`. */
  nextPin(to: string): Promise<string>;
  sent: { to: string; body: string }[];
  close(): Promise<void>;
}

export async function startMailbox(): Promise<Mailbox> {
  const waiting = new Map<string, ((pin: string) => void)[]>();
  const sent: { to: string; body: string }[] = [];
  const server = new SMTPServer({
    authOptional: true,
    disabledCommands: ['STARTTLS'],
    onData(stream, session, callback) {
      let body = '';
      stream.on('data', (chunk: Buffer) => {
        body += chunk.toString('utf8');
      });
      stream.on('end', () => {
        for (const rcpt of session.envelope.rcptTo) {
          const to = rcpt.address.toLowerCase();
          sent.push({ to, body });
          const pin = /login code is (\d{6})/.exec(body)?.[1];
          if (pin) waiting.get(to)?.shift()?.(pin);
        }
        callback();
      });
    },
  });
  const port = await freePort();
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  return {
    url: `smtp://127.0.0.1:${port}`,
    sent,
    nextPin: (to) =>
      new Promise((resolve) => {
        const list = waiting.get(to.toLowerCase()) ?? [];
        list.push(resolve);
        waiting.set(to.toLowerCase(), list);
      }),
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

export interface LoginHarness {
  gateway: TestGateway;
  url: string;
  port: number;
  mailbox: Mailbox;
  // biome-ignore lint/suspicious/noExplicitAny: tests read arbitrary envelope fields.
  api(method: string, path: string, json?: unknown): Promise<{ status: number; body: any }>;
  close(): Promise<void>;
}

export async function startLoginHarness(
  options: { login?: LoginOptions; server?: Parameters<typeof startTestGateway>[0] } = {},
): Promise<LoginHarness> {
  const mailbox = await startMailbox();
  // smtp has no flag or environment variable: it comes from a config file, as in production.
  const configDir = tempDir('gatehouse-login-');
  const config = path.join(configDir.dir, 'gatehouse.json');
  writeFileSync(config, JSON.stringify({ smtp: { url: mailbox.url, from: 'access@gatehouse.test' } }));
  const gateway = await startTestGateway({
    ...options.server,
    settings: { ...options.server?.settings, config },
    server: { ...options.server?.server, ...(options.login && { login: options.login }) },
  });
  const accountId = gateway.gateway.account.accountId;
  const secret = (
    await createApiToken(gateway.gateway.repos.apiTokens, {
      accountId,
      name: 'login-test',
      permissions: [
        'Access: Apps and Policies Write',
        'Access: Organizations, Identity Providers, and Groups Write',
      ],
    })
  ).secret;
  return {
    gateway,
    url: gateway.url,
    port: Number(new URL(gateway.url).port),
    mailbox,
    async api(method, path, json) {
      const response = await fetch(`${gateway.url}/client/v4/accounts/${accountId}/access${path}`, {
        method,
        headers: { authorization: `Bearer ${secret}`, 'content-type': 'application/json' },
        ...(json !== undefined && { body: JSON.stringify(json) }),
      });
      const text = await response.text();
      return { status: response.status, body: text ? JSON.parse(text) : null };
    },
    async close() {
      await gateway.close();
      await mailbox.close();
      configDir.cleanup();
    },
  };
}

/** A cookie jar per host and raw requests to the one listener with any Host header. */
export class Browser {
  readonly jar = new Map<string, Map<string, string>>();
  readonly setCookies: string[] = [];

  constructor(private readonly port: number) {}

  async request(
    url: string,
    init: { method?: string; form?: Record<string, string>; headers?: Record<string, string> } = {},
  ): Promise<{ status: number; headers: Headers; text: string; location: string | null }> {
    const target = new URL(url);
    const cookies = this.jar.get(target.host);
    const headers: Record<string, string> = { accept: 'text/html', host: target.host, ...init.headers };
    if (cookies && cookies.size > 0 && !init.headers?.cookie) {
      headers.cookie = [...cookies].map(([name, value]) => `${name}=${value}`).join('; ');
    }
    let body: string | undefined;
    if (init.form) {
      body = new URLSearchParams(init.form).toString();
      headers['content-type'] = 'application/x-www-form-urlencoded';
    }
    // Hosts other than 127.0.0.1:<port> (app hosts, *.localhost) reach the one listener.
    const port = target.hostname === '127.0.0.1' ? target.port : this.port;
    const response = await fetch(`http://127.0.0.1:${port}${target.pathname}${target.search}`, {
      method: init.method ?? (init.form ? 'POST' : 'GET'),
      headers,
      body,
      redirect: 'manual',
    });
    for (const line of response.headers.getSetCookie()) {
      this.setCookies.push(line);
      const [pair] = line.split(';');
      const index = pair!.indexOf('=');
      const name = pair!.slice(0, index);
      const value = pair!.slice(index + 1);
      const hostJar = this.jar.get(target.host) ?? new Map<string, string>();
      if (/max-age=0/i.test(line) || value === '') hostJar.delete(name);
      else hostJar.set(name, value);
      this.jar.set(target.host, hostJar);
    }
    return {
      status: response.status,
      headers: response.headers,
      text: await response.text(),
      location: response.headers.get('location'),
    };
  }
}

export function formField(html: string, name: string): string {
  const match = new RegExp(`name="${name}" value="([^"]*)"`).exec(html);
  if (!match) throw new Error(`no field ${name} in page`);
  return match[1]!;
}

/** Every `value` of hidden `idp` fields on the picker. */
export function idpChoices(html: string): string[] {
  return [...html.matchAll(/name="idp" value="([^"]*)"/g)].map((m) => m[1]!);
}
