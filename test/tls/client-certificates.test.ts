// TLS client certificates end to end (spec §3.2 `certificate` and `common_name`): a gateway whose
// one listener speaks HTTPS and asks for client certificates verified against a client CA,
// configured through the management API, with real certificates made in the test
// (test/support/certificates.ts) and undici presenting them over loopback.

import { once } from 'node:events';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import tls from 'node:tls';
import { Agent, request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApiToken } from '../../src/api/api-tokens.ts';
import { mintJwt } from '../../src/keys/jwt.ts';
import { formField, type Mailbox, startMailbox } from '../login/support.ts';
import { claimsOf, type Origin, startOrigin } from '../proxy/support.ts';
import { type CertificateAuthority, createCertificateAuthority } from '../support/certificates.ts';
import { databaseKinds, tempDir } from '../support/databases.ts';
import { startTestGateway, type TestGateway } from '../support/gateway.ts';

const ROBOTS = 'robots.test';
const STAFF = 'staff.test';
const MIXED = 'mixed.test';
const WIKI = 'wiki.test';
const JSON_CLIENT = { accept: 'application/json' };
const BROWSER = { accept: 'text/html,application/xhtml+xml,*/*;q=0.8' };

interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  // biome-ignore lint/suspicious/noExplicitAny: tests read arbitrary envelope fields.
  body: any;
}

describe.each(databaseKinds)('TLS client certificates (%s)', (kind) => {
  const temp = tempDir('gatehouse-mtls-');
  let clients: CertificateAuthority;
  let rogue: CertificateAuthority;
  let serverCa: CertificateAuthority;
  let gateway: TestGateway;
  let origin: Origin;
  let mailbox: Mailbox;
  let pinIdp: string;
  let secret: string;
  let accountUrl: string;
  /** One agent per client identity: none, a certificate, another CA's, … (closed at the end). */
  const agents = new Map<string, Agent>();
  let staffPolicy: { id: string; precedence: number };
  let serviceToken: { client_id: string; client_secret: string };

  async function agentFor(name: string, certificate?: { cert: string; key: string }): Promise<Agent> {
    const agent = new Agent({ connect: { ca: serverCa.cert, ...(certificate ?? {}) } });
    agents.set(name, agent);
    return agent;
  }

  async function call(
    agent: Agent,
    host: string | null,
    pathname: string,
    options: {
      method?: 'GET' | 'POST' | 'PUT';
      json?: unknown;
      raw?: string;
      headers?: Record<string, string>;
    } = {},
  ): Promise<Reply> {
    const response = await request(`${gateway.url}${pathname}`, {
      dispatcher: agent,
      method: options.method ?? 'GET',
      headers: {
        ...(host && { host }),
        ...(options.json !== undefined && { 'content-type': 'application/json' }),
        ...options.headers,
      },
      ...(options.json !== undefined && { body: JSON.stringify(options.json) }),
      ...(options.raw !== undefined && { body: options.raw }),
    });
    const text = await response.body.text();
    let body: unknown = text;
    try {
      body = JSON.parse(text);
    } catch {}
    return { status: response.statusCode, headers: response.headers, body };
  }

  /** The management API over the same HTTPS listener (no client certificate needed there). */
  async function api(method: 'GET' | 'POST' | 'PUT', pathname: string, json?: unknown): Promise<Reply> {
    return call(agents.get('none')!, null, `${accountUrl}${pathname}`, {
      method,
      ...(json !== undefined && { json }),
      headers: { authorization: `Bearer ${secret}` },
    });
  }

  async function created(method: 'POST' | 'PUT', pathname: string, json: unknown) {
    const reply = await api(method, pathname, json);
    expect([200, 201], JSON.stringify(reply.body)).toContain(reply.status);
    return reply.body.result;
  }

  beforeAll(async () => {
    [clients, rogue, serverCa] = await Promise.all([
      createCertificateAuthority('Gatehouse test clients'),
      createCertificateAuthority('Someone else'),
      createCertificateAuthority('Gatehouse test server'),
    ]);
    // undici checks the server certificate against the Host header's name, as a browser would.
    const server = await serverCa.issue({
      commonName: 'gatehouse',
      usage: 'server',
      dnsNames: [ROBOTS, STAFF, MIXED, WIKI],
    });
    const files = { tlsCert: 'server.pem', tlsKey: 'server-key.pem', tlsClientCa: 'clients-ca.pem' };
    writeFileSync(path.join(temp.dir, files.tlsCert), server.cert);
    writeFileSync(path.join(temp.dir, files.tlsKey), server.key);
    writeFileSync(path.join(temp.dir, files.tlsClientCa), clients.cert);
    // smtp (for one-time PINs) has no environment variable: it comes from a config file.
    mailbox = await startMailbox();
    const config = path.join(temp.dir, 'gatehouse.json');
    writeFileSync(config, JSON.stringify({ smtp: { url: mailbox.url, from: 'access@gatehouse.test' } }));
    gateway = await startTestGateway({
      kind,
      settings: {
        config,
        tlsCert: path.join(temp.dir, files.tlsCert),
        tlsKey: path.join(temp.dir, files.tlsKey),
        tlsClientCa: path.join(temp.dir, files.tlsClientCa),
      },
    });
    origin = await startOrigin();
    const accountId = gateway.gateway.account.accountId;
    accountUrl = `/client/v4/accounts/${accountId}`;
    secret = (
      await createApiToken(gateway.gateway.repos.apiTokens, {
        accountId,
        name: 'mtls-test',
        permissions: [
          'Access: Apps and Policies Write',
          'Access: Service Tokens Write',
          'Access: Organizations, Identity Providers, and Groups Write',
          'Cloudflare Tunnel Write',
        ],
      })
    ).secret;

    const expired = new Date(Date.now() - 3_600_000);
    const [robot1, robot2, impostor, stale] = await Promise.all([
      clients.issue({ commonName: 'robot-1', usage: 'client' }),
      clients.issue({ commonName: 'robot-2', usage: 'client' }),
      rogue.issue({ commonName: 'robot-1', usage: 'client' }),
      clients.issue({
        commonName: 'robot-1',
        usage: 'client',
        notBefore: new Date(expired.getTime() - 3_600_000),
        notAfter: expired,
      }),
    ]);
    await agentFor('none');
    await agentFor('robot-1', robot1);
    await agentFor('robot-2', robot2);
    await agentFor('impostor', impostor);
    await agentFor('expired', stale);

    const tunnelId = (await api('GET', '/cfd_tunnel')).body.result[0].id as string;
    await created('PUT', `/cfd_tunnel/${tunnelId}/configurations`, {
      config: {
        ingress: [
          ...[ROBOTS, STAFF, MIXED, WIKI].map((hostname) => ({ hostname, service: origin.url })),
          { service: 'http_status:404' },
        ],
      },
    });
    // Service Auth for one machine: a certificate from the client CA naming robot-1.
    const robots = await created('POST', '/access/policies', {
      name: 'robot-1 by certificate',
      decision: 'non_identity',
      include: [{ common_name: { common_name: 'robot-1' } }],
    });
    await created('POST', '/access/apps', {
      type: 'self_hosted',
      name: 'robots',
      domain: ROBOTS,
      policies: [{ id: robots.id, precedence: 1 }],
    });
    // People, but only from machines holding any certificate of the client CA.
    const staff = await created('POST', '/access/policies', {
      name: 'staff on managed devices',
      decision: 'allow',
      include: [{ email_domain: { domain: 'example.com' } }],
      require: [{ certificate: {} }],
    });
    const staffApp = await created('POST', '/access/apps', {
      type: 'self_hosted',
      name: 'staff',
      domain: STAFF,
      policies: [{ id: staff.id, precedence: 1 }],
    });
    staffPolicy = { id: staff.id, precedence: staffApp.policies[0].precedence };
    // A service token that counts only from a robot-2 machine.
    serviceToken = await created('POST', '/access/service_tokens', { name: 'robot-2 token' });
    const mixed = await created('POST', '/access/policies', {
      name: 'token from robot-2',
      decision: 'non_identity',
      include: [{ any_valid_service_token: {} }],
      require: [{ common_name: { common_name: 'robot-2' } }],
    });
    await created('POST', '/access/apps', {
      type: 'self_hosted',
      name: 'mixed',
      domain: MIXED,
      policies: [{ id: mixed.id, precedence: 1 }],
    });
    // A login for people at robot-1's keyboard only: the certificate is checked at the login too.
    pinIdp = (
      await created('POST', '/access/identity_providers', { name: 'PIN', type: 'onetimepin', config: {} })
    ).id;
    await created('POST', '/access/apps', {
      type: 'self_hosted',
      name: 'wiki',
      domain: WIKI,
      policies: [
        {
          name: 'staff at robot-1',
          decision: 'allow',
          include: [{ email_domain: { domain: 'example.com' } }],
          require: [{ common_name: { common_name: 'robot-1' } }],
        },
      ],
    });
    await gateway.gateway.snapshot.refresh();
  });

  afterAll(async () => {
    for (const agent of agents.values()) await agent.close();
    await gateway?.close();
    await origin?.close();
    await mailbox?.close();
    temp.cleanup();
  });

  it('admits a certificate from the client CA with the common name the policy names', async () => {
    const before = origin.seen.length;
    const spoofed = { 'cf-access-authenticated-user-email': 'admin@example.com' };
    const reply = await call(agents.get('robot-1')!, ROBOTS, '/status', {
      headers: { ...JSON_CLIENT, ...spoofed },
    });
    expect(reply.status).toBe(200);
    expect(reply.body).toEqual({ ok: true, url: '/status' });
    const seen = origin.seen.slice(before);
    expect(seen).toHaveLength(1);
    // A certificate is a fact of the connection, like the client IP: it carries no user, so the
    // origin gets no identity, and none the client made up.
    expect(seen[0]!.headers['cf-access-authenticated-user-email']).toBeUndefined();
    expect(seen[0]!.headers['cf-access-jwt-assertion']).toBeUndefined();
  });

  it('refuses another common name, another CA, an expired certificate and none at all', async () => {
    const before = origin.seen.length;
    for (const name of ['robot-2', 'impostor', 'expired', 'none']) {
      // No verified certificate that a policy accepts is like no credential (decision 5):
      // 401 for API clients, the login for browsers; the origin never sees the request.
      const apiReply = await call(agents.get(name)!, ROBOTS, '/status', { headers: JSON_CLIENT });
      expect(apiReply.status, name).toBe(401);
      const page = await call(agents.get(name)!, ROBOTS, '/status', { headers: BROWSER });
      expect(page.status, name).toBe(302);
      expect(String(page.headers.location)).toMatch(
        new RegExp(`^${gateway.url}/cdn-cgi/access/login/${ROBOTS.replace('.', '\\.')}\\?`),
      );
    }
    expect(origin.seen.length).toBe(before);
  });

  it('re-checks a session against the certificate of every request', async () => {
    const keys = gateway.gateway.keys;
    const aud = (await api('GET', '/access/apps')).body.result.find(
      (app: { domain: string }) => app.domain === STAFF,
    ).aud as string;
    const session = await mintJwt(
      keys,
      {
        type: 'app',
        aud: [aud],
        sub: '0b7d6f0e-7f0c-4d8e-9d61-2b1c4c3d5e6f',
        email: 'alice@example.com',
        identity_nonce: 'n1',
        policy_id: staffPolicy.id,
        policy_precedence: staffPolicy.precedence,
      },
      { issuer: gateway.url, expiresAt: Math.floor(Date.now() / 1000) + 3600 },
    );
    const cookie = { cookie: `CF_Authorization=${session}` };
    // Any certificate from the client CA will do for the `certificate` rule.
    for (const name of ['robot-1', 'robot-2']) {
      const reply = await call(agents.get(name)!, STAFF, '/', { headers: { ...JSON_CLIENT, ...cookie } });
      expect(reply.status, name).toBe(200);
    }
    // The same session from a machine without a valid certificate: a fresh login decides.
    for (const name of ['none', 'impostor']) {
      const reply = await call(agents.get(name)!, STAFF, '/', { headers: { ...BROWSER, ...cookie } });
      expect(reply.status, name).toBe(302);
      expect(String(reply.headers.location)).toContain(`/cdn-cgi/access/login/${STAFF}?`);
    }
  });

  it('feeds the certificate to Service Auth with a service token', async () => {
    const token = {
      'cf-access-client-id': serviceToken.client_id,
      'cf-access-client-secret': serviceToken.client_secret,
    };
    const allowed = await call(agents.get('robot-2')!, MIXED, '/', { headers: { ...JSON_CLIENT, ...token } });
    expect(allowed.status).toBe(200);
    // A valid service token that the policy does not allow from this machine: 403 (decision 5).
    for (const name of ['robot-1', 'impostor', 'none']) {
      const refused = await call(agents.get(name)!, MIXED, '/', { headers: { ...JSON_CLIENT, ...token } });
      expect(refused.status, name).toBe(403);
    }
  });

  it('refuses TLS renegotiation, so a connection cannot swap its certificate', async () => {
    const robot = await clients.issue({ commonName: 'robot-1', usage: 'client' });
    const socket = tls.connect({
      port: Number(new URL(gateway.url).port),
      host: '127.0.0.1',
      servername: ROBOTS,
      ca: serverCa.cert,
      maxVersion: 'TLSv1.2',
      ...robot,
    });
    socket.on('error', () => {});
    await once(socket, 'secureConnect');
    const received: Buffer[] = [];
    socket.on('data', (chunk: Buffer) => received.push(chunk));
    // events.once would reject on the client's EPROTO error: wait for the close itself.
    const closed = new Promise((resolve) => socket.once('close', resolve));
    socket.renegotiate({ rejectUnauthorized: true }, () => {});
    // The new handshake leaves with the next write; the server drops the connection instead.
    socket.write(`GET / HTTP/1.1\r\nhost: ${ROBOTS}\r\naccept: application/json\r\n\r\n`);
    await closed;
    expect(Buffer.concat(received).toString()).not.toContain('HTTP/1.1 200');
  });

  it('sets Secure cookies on the https team domain', async () => {
    const reply = await call(agents.get('none')!, ROBOTS, '/', { headers: BROWSER });
    expect(reply.status).toBe(302);
    const cookies = [reply.headers['set-cookie'] ?? []].flat();
    expect(cookies.length).toBeGreaterThan(0);
    for (const line of cookies) expect(line).toMatch(/;\s*Secure/i);
  });

  /**
   * A one-time PIN login for the wiki up to the PIN check, as a browser holding robot-1's
   * certificate; the PIN is then sent from the connection of `verifyAs`.
   */
  async function pinLogin(verifyAs: string): Promise<Reply> {
    const robot = agents.get('robot-1')!;
    const teamCookies = new Map<string, string>();
    const page = async (agent: Agent, url: string, form?: Record<string, string>) => {
      const target = new URL(url, gateway.url);
      const reply = await call(agent, null, `${target.pathname}${target.search}`, {
        ...(form && { method: 'POST' as const }),
        headers: {
          ...BROWSER,
          cookie: [...teamCookies].map(([name, value]) => `${name}=${value}`).join('; '),
          ...(form && { 'content-type': 'application/x-www-form-urlencoded' }),
        },
        ...(form && { raw: new URLSearchParams(form).toString() }),
      });
      for (const line of [reply.headers['set-cookie'] ?? []].flat()) {
        const [pair] = line.split(';');
        const index = pair!.indexOf('=');
        teamCookies.set(pair!.slice(0, index), pair!.slice(index + 1));
      }
      return reply;
    };
    const toLogin = await call(robot, WIKI, '/docs', { headers: BROWSER });
    expect(toLogin.status).toBe(302);
    const picker = await page(robot, String(toLogin.headers.location));
    expect(picker.status).toBe(200);
    // The team domain is https: its cookies (CF_Session here) are Secure, SameSite=None.
    const teamSetCookies = [picker.headers['set-cookie'] ?? []].flat();
    expect(teamSetCookies.some((line) => line.startsWith('CF_Session='))).toBe(true);
    for (const line of teamSetCookies) expect(line).toMatch(/; SameSite=None; Secure/);
    const flow = formField(picker.body, 'flow');
    expect((await page(robot, '/cdn-cgi/access/idp', { flow, idp: pinIdp })).status).toBe(200);
    const pin = mailbox.nextPin('carol@example.com');
    expect((await page(robot, '/cdn-cgi/access/otp', { flow, email: 'carol@example.com' })).status).toBe(200);
    return page(agents.get(verifyAs)!, '/cdn-cgi/access/otp/verify', { flow, pin: await pin });
  }

  it('checks the certificate when the login mints the app token', async () => {
    const admitted = await pinLogin('robot-1');
    expect(admitted.status).toBe(302);
    const handOff = new URL(String(admitted.headers.location));
    expect(handOff.host).toBe(WIKI);
    expect(handOff.pathname).toBe('/cdn-cgi/access/authorized');
    expect(claimsOf(handOff.searchParams.get('token')!)).toMatchObject({
      email: 'carol@example.com',
      type: 'app',
    });
    // The same login whose PIN arrives over a connection without robot-1's certificate: blocked.
    for (const name of ['none', 'robot-2']) {
      const blocked = await pinLogin(name);
      expect(blocked.status, name).toBe(403);
      expect(String(blocked.headers.location ?? '')).not.toContain('token=');
    }
  });

  it('accepts certificate and common_name rules because a client CA is configured', async () => {
    const reply = await api('POST', '/access/policies', {
      name: 'any device',
      decision: 'allow',
      include: [{ email: { email: 'bob@example.com' } }],
      exclude: [{ common_name: { common_name: 'revoked-laptop' } }],
      require: [{ certificate: {} }],
    });
    expect(reply.status, JSON.stringify(reply.body)).toBe(201);
  });
});

describe('without a client CA', () => {
  let gateway: TestGateway;
  let secret: string;

  beforeAll(async () => {
    gateway = await startTestGateway();
    secret = (
      await createApiToken(gateway.gateway.repos.apiTokens, {
        accountId: gateway.gateway.account.accountId,
        name: 'mtls-test',
        permissions: ['Access: Apps and Policies Write'],
      })
    ).secret;
  });
  afterAll(async () => gateway?.close());

  it('refuses certificate and common_name rules, saying why, and stores nothing', async () => {
    const policies = `${gateway.url}/client/v4/accounts/${gateway.gateway.account.accountId}/access/policies`;
    const headers = { authorization: `Bearer ${secret}`, 'content-type': 'application/json' };
    for (const rule of [{ certificate: {} }, { common_name: { common_name: 'robot-1' } }]) {
      const response = await fetch(policies, {
        method: 'POST',
        headers,
        body: JSON.stringify({ name: 'mtls', decision: 'non_identity', include: [rule] }),
      });
      expect(response.status).toBe(400);
      const body = (await response.json()) as { success: boolean; errors: { message: string }[] };
      expect(body.success).toBe(false);
      expect(body.errors[0]!.message).toContain(
        'the gateway has no TLS client certificate (mTLS) configuration, so no request carries a verified certificate',
      );
    }
    const list = (await (await fetch(policies, { headers })).json()) as { result: unknown[] };
    expect(list.result).toEqual([]);
  });
});
