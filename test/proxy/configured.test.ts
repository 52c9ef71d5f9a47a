// The proxy over the live configuration snapshot, configured only through the management API with
// the official `cloudflare` SDK: ingress (with originRequest options), apps, policies, service
// tokens; every change reaches the proxy's decisions through the change feed, without restarts.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import Cloudflare from 'cloudflare';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mintJwt } from '../../src/keys/jwt.ts';
import { startTestApi, type TestApi } from '../api/support.ts';
import { databaseKinds, tempDir } from '../support/databases.ts';
import { API, claimsOf, type Origin, send, startOrigin } from './support.ts';

/** Retries `check` until it passes: changes reach the proxy asynchronously (debounced rebuild). */
async function eventually<T>(check: () => Promise<T>, timeoutMs = 5_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await check();
    } catch (error) {
      if (Date.now() > deadline) throw error;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
}

/** A self-signed certificate for `origin.internal` and an https origin serving with it. */
async function startTlsOrigin(
  dir: string,
): Promise<{ url: string; caFile: string; hosts: string[]; close(): Promise<void> }> {
  const key = path.join(dir, 'key.pem');
  const cert = path.join(dir, 'cert.pem');
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-keyout',
      key,
      '-out',
      cert,
      '-days',
      '1',
      '-subj',
      '/CN=origin.internal',
      '-addext',
      'subjectAltName=DNS:origin.internal',
    ],
    { stdio: 'ignore' },
  );
  const hosts: string[] = [];
  const server = https.createServer({ key: readFileSync(key), cert: readFileSync(cert) }, (req, res) => {
    hosts.push(String(req.headers.host));
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end('tls ok');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `https://127.0.0.1:${(server.address() as AddressInfo).port}`,
    caFile: cert,
    hosts,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

describe.each(databaseKinds)('proxy configured through the management API (%s)', (kind) => {
  let api: TestApi;
  let client: Cloudflare;
  let origin: Origin;
  let tls: Awaited<ReturnType<typeof startTlsOrigin>>;
  let temp: ReturnType<typeof tempDir>;
  let port: number;
  let tunnelId: string;

  beforeAll(async () => {
    api = await startTestApi(kind);
    origin = await startOrigin();
    temp = tempDir('gatehouse-tls-');
    tls = await startTlsOrigin(temp.dir);
    port = Number(new URL(api.gateway.url).port);
    const secret = await api.tokenWith([
      'Access: Apps and Policies Write',
      'Access: Apps and Policies Revoke',
      'Access: Service Tokens Write',
      'Cloudflare Tunnel Write',
    ]);
    client = new Cloudflare({ apiToken: secret, baseURL: `${api.gateway.url}/client/v4`, maxRetries: 0 });
    for await (const tunnel of client.zeroTrust.tunnels.cloudflared.list({ account_id: api.accountId }))
      tunnelId = tunnel.id!;
  });

  afterAll(async () => {
    await api?.close();
    await origin?.close();
    await tls?.close();
    temp?.cleanup();
  });

  const get = (host: string, headers: [string, string][] = []) =>
    send(port, { host, headers: [API, ...headers] });

  async function setIngress(ingress: Record<string, unknown>[]): Promise<void> {
    await client.zeroTrust.tunnels.cloudflared.configurations.update(tunnelId, {
      account_id: api.accountId,
      config: {
        ingress: [...ingress, { service: 'http_status:404' }] as { hostname: string; service: string }[],
      },
    });
  }

  it('follows ingress, apps, policies and service tokens as they change', async () => {
    const account_id = api.accountId;
    const access = client.zeroTrust.access;
    expect((await get('wiki.e2e.test')).status).toBe(404);

    await setIngress([{ hostname: 'wiki.e2e.test', service: origin.url }]);
    // Routed, but no application covers it: deny_unmatched_requests (on by default) refuses it.
    await eventually(async () => expect((await get('wiki.e2e.test')).status).toBe(403));

    const token = await access.serviceTokens.create({ account_id, name: 'ci' });
    const creds = (secret: string): [string, string][] => [
      ['CF-Access-Client-Id', token.client_id!],
      ['CF-Access-Client-Secret', secret],
    ];
    const service = await access.policies.create({
      account_id,
      name: 'CI',
      decision: 'non_identity',
      include: [{ service_token: { token_id: token.id! } }],
    });
    const staff = await access.policies.create({
      account_id,
      name: 'Staff',
      decision: 'allow',
      include: [{ email_domain: { domain: 'example.com' } }],
    });
    const app = await access.applications.create({
      account_id,
      type: 'self_hosted',
      name: 'wiki',
      domain: 'wiki.e2e.test',
      policies: [service.id!, staff.id!],
    } as never);

    // A service token: in, with a service-token assertion.
    const seen = await eventually(async () => {
      const response = await get('wiki.e2e.test', creds(token.client_secret!));
      expect(response.status).toBe(200);
      return origin.seen[origin.seen.length - 1]!;
    });
    expect(claimsOf(String(seen.headers['cf-access-jwt-assertion']))).toMatchObject({
      common_name: token.client_id,
      sub: '',
      aud: [(app as { aud: string }).aud],
    });

    // The use is recorded off the request path: last_seen_at and a non-identity log row.
    await eventually(async () => {
      const stored = await api.gateway.gateway.repos.serviceTokens.get(account_id, token.id!);
      expect(stored?.lastSeenAt).not.toBeNull();
      const rows = await api.gateway.gateway.repos.accessRequests.list(
        account_id,
        { nonIdentity: { value: true, op: 'eq' } },
        { direction: 'desc', offset: 0, limit: 10 },
      );
      expect(rows.items).toEqual([
        expect.objectContaining({
          action: 'service_token',
          allowed: 1,
          service_token_id: token.id,
          app_uid: app.id,
        }),
      ]);
    });

    // A session minted as the login does, naming the admitting policy and its precedence.
    const attached = (await access.applications.get(app.id!, { account_id })) as {
      policies: { id: string; precedence: number }[];
      aud: string;
    };
    const staffLink = attached.policies.find((entry) => entry.id === staff.id)!;
    const session = await mintJwt(
      api.gateway.gateway.keys,
      {
        type: 'app',
        aud: [attached.aud],
        sub: '3f7c1f2e-5d0a-4c7e-9a55-0d6a1c2b3e4f',
        email: 'alice@example.com',
        policy_id: staff.id,
        policy_precedence: staffLink.precedence,
      },
      {
        issuer: api.gateway.url,
        expiresAt: Math.floor(Date.now() / 1000) + 600,
        now: new Date(Date.now() - 5_000),
      },
    );
    const withSession: [string, string][] = [['cf-access-token', session]];
    expect((await get('wiki.e2e.test', withSession)).status).toBe(200);

    // revoke_tokens ends the session (immediately, within the process) but not the service token.
    await access.applications.revokeTokens(app.id!, { account_id });
    await eventually(async () => expect((await get('wiki.e2e.test', withSession)).status).toBe(401));
    expect((await get('wiki.e2e.test', creds(token.client_secret!))).status).toBe(200);

    // Rotation: the new secret works at once.
    const rotated = await access.serviceTokens.rotate(token.id!, { account_id });
    await eventually(async () =>
      expect((await get('wiki.e2e.test', creds(rotated.client_secret!))).status).toBe(200),
    );

    // Deleting the token revokes it.
    await access.serviceTokens.delete(token.id!, { account_id });
    await eventually(async () => {
      const response = await get('wiki.e2e.test', creds(rotated.client_secret!));
      expect(response.status).toBe(401);
    });

    // A bypass policy put in front (PUT replaces the app) lets anyone in; removing the app routes
    // the host to "covered by no app" again.
    const open = await access.policies.create({
      account_id,
      name: 'Open',
      decision: 'bypass',
      include: [{ everyone: {} }],
    });
    await access.applications.update(app.id!, {
      account_id,
      type: 'self_hosted',
      name: 'wiki',
      domain: 'wiki.e2e.test',
      policies: [open.id!],
    } as never);
    await eventually(async () => expect((await get('wiki.e2e.test')).status).toBe(200));
    await access.applications.delete(app.id!, { account_id });
    await eventually(async () => expect((await get('wiki.e2e.test')).status).toBe(403));
  });

  it('applies originRequest: noTLSVerify, caPool with httpHostHeader, connectTimeout', async () => {
    const account_id = api.accountId;
    const access = client.zeroTrust.access;
    const open = await access.policies.create({
      account_id,
      name: 'Open TLS',
      decision: 'bypass',
      include: [{ everyone: {} }],
    });
    for (const domain of ['strict.tls.test', 'insecure.tls.test', 'ca.tls.test', 'dead.tls.test']) {
      await access.applications.create({
        account_id,
        type: 'self_hosted',
        name: domain,
        domain,
        policies: [open.id!],
      } as never);
    }
    await setIngress([
      { hostname: 'strict.tls.test', service: tls.url },
      { hostname: 'insecure.tls.test', service: tls.url, originRequest: { noTLSVerify: true } },
      {
        hostname: 'ca.tls.test',
        service: tls.url,
        originRequest: { caPool: tls.caFile, httpHostHeader: 'origin.internal' },
      },
      // TEST-NET-1 (RFC 5737) is never routed: the connection can only time out or fail.
      {
        hostname: 'dead.tls.test',
        service: 'http://192.0.2.1:81',
        originRequest: { connectTimeout: '300ms' },
      },
    ]);
    // A self-signed origin is refused unless the rule says otherwise.
    await eventually(async () => expect((await get('strict.tls.test')).status).toBe(502));
    const insecure = await get('insecure.tls.test');
    expect(insecure.status).toBe(200);
    expect(insecure.body).toBe('tls ok');
    const before = tls.hosts.length;
    const trusted = await get('ca.tls.test');
    expect(trusted.status).toBe(200);
    // httpHostHeader is the Host the origin sees (and the name its certificate is checked for).
    expect(tls.hosts.slice(before)).toEqual(['origin.internal']);
    const started = Date.now();
    const dead = await get('dead.tls.test');
    expect(dead.status).toBe(502);
    expect(Date.now() - started).toBeLessThan(5_000);
  });
});
