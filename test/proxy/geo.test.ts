// The `geo` selector end to end: a country header believed only from a trusted proxy
// (settings `countryHeader` + `trustedProxies`) and a MaxMind database (`geoipDatabase`, a real
// .mmdb built by test/support/mmdb.ts) for other peers; real HTTP through the proxy from IPv4
// and IPv6 peers, the API accepting geo rules only when a country source is configured, the
// access log's country and explanation, and the unit behaviour of the source and its settings.
import { writeFileSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApiToken } from '../../src/api/api-tokens.ts';
import { ConfigError, loadSettings } from '../../src/config/settings.ts';
import { createCountrySource } from '../../src/geo/country.ts';
import { mintJwt } from '../../src/keys/jwt.ts';
import { tempDir } from '../support/databases.ts';
import { startTestGateway, type TestGateway } from '../support/gateway.ts';
import { buildCountryDatabase } from '../support/mmdb.ts';
import { freePort } from '../support/ports.ts';
import { type Origin, startOrigin } from './support.ts';

interface Peer {
  /** Where the gateway listens. */
  connect: string;
  /** The client's own address: the peer address the gateway sees. */
  from: string;
}

/** One request from `peer` with the given Host and extra headers (names may repeat). */
function request(
  port: number,
  peer: Peer,
  host: string,
  headers: [string, string][] = [],
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: peer.connect,
        localAddress: peer.from,
        port,
        path: '/',
        headers: [['host', host], ['accept', 'application/json'], ...headers].flat(),
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () => resolve({ status: res.statusCode!, body: Buffer.concat(chunks).toString() }));
      },
    );
    req.on('error', reject);
    req.end();
  });
}

/** A gateway listening on `listenHost`, configured through a config file as an operator would. */
async function startGeoGateway(
  listenHost: string,
  origin: Origin,
  geo: Record<string, unknown>,
): Promise<{ gateway: TestGateway; port: number; close(): Promise<void> }> {
  const temp = tempDir('gatehouse-geo-');
  const config = path.join(temp.dir, 'gatehouse.yaml');
  writeFileSync(
    config,
    JSON.stringify({
      ...geo,
      ingress: [
        { hostname: 'geo.localhost', service: origin.url },
        { hostname: 'open.localhost', service: origin.url },
        { hostname: 'svc.localhost', service: origin.url },
        { hostname: 'staff.localhost', service: origin.url },
        { service: 'http_status:404' },
      ],
    }),
  );
  // The port freePort found may be taken before the gateway binds it (tests run in parallel).
  let gateway: TestGateway | null = null;
  let port = 0;
  for (let attempt = 1; gateway === null; attempt++) {
    port = await freePort();
    const address = listenHost.includes(':') ? `[${listenHost}]:${port}` : `${listenHost}:${port}`;
    try {
      gateway = await startTestGateway({
        settings: { config, listen: address, teamDomain: `http://${address}` },
      });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EADDRINUSE' || attempt === 3) {
        temp.cleanup();
        throw error;
      }
    }
  }
  return {
    gateway,
    port,
    async close() {
      await gateway.close();
      temp.cleanup();
    },
  };
}

/** The management API of `gateway`, with a token for apps, service tokens and the access log. */
async function accessApi(gateway: TestGateway) {
  const accountId = gateway.gateway.account.accountId;
  const { secret } = await createApiToken(gateway.gateway.repos.apiTokens, {
    accountId,
    name: 'geo-test',
    permissions: [
      'Access: Apps and Policies Write',
      'Access: Service Tokens Write',
      'Access: Audit Logs Read',
    ],
  });
  // biome-ignore lint/suspicious/noExplicitAny: tests read arbitrary envelope fields.
  return async (method: string, path: string, json?: unknown): Promise<{ status: number; body: any }> => {
    const response = await fetch(`${gateway.url}/client/v4/accounts/${accountId}/access${path}`, {
      method,
      headers: { authorization: `Bearer ${secret}`, 'content-type': 'application/json' },
      ...(json !== undefined && { body: JSON.stringify(json) }),
    });
    return { status: response.status, body: await response.json() };
  };
}

/** Creates the two apps through the management API: bypass for DE only, and bypass for everyone. */
async function createApps(gateway: TestGateway): Promise<{ status: number; body: unknown }[]> {
  const api = await accessApi(gateway);
  const create = (domain: string, rule: Record<string, unknown>) =>
    api('POST', '/apps', {
      type: 'self_hosted',
      name: domain,
      domain,
      policies: [{ name: `bypass ${domain}`, decision: 'bypass', include: [rule] }],
    });
  const created = [
    await create('geo.localhost', { geo: { country_code: 'de' } }),
    await create('open.localhost', { everyone: {} }),
  ];
  await gateway.gateway.snapshot.refresh();
  return created;
}

/** A MaxMind database file: the trusted proxy's own address maps to DE, which must never count. */
const DATABASE_NETWORKS = {
  '127.0.0.1/32': 'FR',
  '127.0.0.2/32': 'DE',
  '127.0.0.3/32': 'DE',
  '::1/128': 'DE',
};

describe('geo from a trusted proxy header and a MaxMind database', () => {
  let origin: Origin;
  let files: ReturnType<typeof tempDir>;
  let v4: Awaited<ReturnType<typeof startGeoGateway>>;
  let v6: Awaited<ReturnType<typeof startGeoGateway>>;
  let databaseOnly6: Awaited<ReturnType<typeof startGeoGateway>>;
  const trusted4: Peer = { connect: '127.0.0.1', from: '127.0.0.2' };
  const untrusted4: Peer = { connect: '127.0.0.1', from: '127.0.0.1' };
  const lookedUp4: Peer = { connect: '127.0.0.1', from: '127.0.0.3' };
  const peer6: Peer = { connect: '::1', from: '::1' };

  beforeAll(async () => {
    origin = await startOrigin();
    files = tempDir('gatehouse-mmdb-');
    const geoipDatabase = path.join(files.dir, 'country.mmdb');
    writeFileSync(geoipDatabase, buildCountryDatabase(DATABASE_NETWORKS));
    const geo = { countryHeader: 'CF-IPCountry', trustedProxies: ['127.0.0.2/32', '::1/128'], geoipDatabase };
    v4 = await startGeoGateway('127.0.0.1', origin, geo);
    v6 = await startGeoGateway('::1', origin, geo);
    databaseOnly6 = await startGeoGateway('::1', origin, { geoipDatabase });
  });
  afterAll(async () => {
    await v4?.close();
    await v6?.close();
    await databaseOnly6?.close();
    await origin?.close();
    files?.cleanup();
  });

  it('lets the API accept geo rules once a country source is configured', async () => {
    for (const gateway of [v4.gateway, v6.gateway, databaseOnly6.gateway]) {
      const created = await createApps(gateway);
      expect(created.map((response) => response.status)).toEqual([201, 201]);
    }
  });

  it('honours the header from a trusted IPv4 peer, and only an unambiguous country', async () => {
    const cases: [[string, string][], number][] = [
      [[['CF-IPCountry', 'DE']], 200],
      [[['cf-ipcountry', 'de']], 200],
      [[['CF-IPCountry', 'FR']], 401],
      [[], 401],
      // Cloudflare's "unknown" is no country; a repeated header is ambiguous; junk is junk.
      [[['CF-IPCountry', 'XX']], 401],
      [
        [
          ['CF-IPCountry', 'DE'],
          ['CF-IPCountry', 'DE'],
        ],
        401,
      ],
      [[['CF-IPCountry', 'DEU']], 401],
      [[['CF-IPCountry', ' DE']], 200],
    ];
    for (const [headers, status] of cases) {
      const response = await request(v4.port, trusted4, 'geo.localhost', headers);
      expect(response.status, JSON.stringify(headers)).toBe(status);
    }
  });

  it('ignores the header from a peer that is not a trusted proxy: the database decides', async () => {
    // 127.0.0.1 is FR in the database, whatever it claims.
    expect((await request(v4.port, untrusted4, 'geo.localhost', [['CF-IPCountry', 'DE']])).status).toBe(401);
    // 127.0.0.3 is DE in the database, whatever it claims.
    expect((await request(v4.port, lookedUp4, 'geo.localhost', [['CF-IPCountry', 'FR']])).status).toBe(200);
    expect((await request(v4.port, lookedUp4, 'geo.localhost')).status).toBe(200);
  });

  it('honours the header from a trusted IPv6 peer and never looks a trusted proxy up', async () => {
    expect((await request(v6.port, peer6, 'geo.localhost', [['CF-IPCountry', 'DE']])).status).toBe(200);
    expect((await request(v6.port, peer6, 'geo.localhost', [['CF-IPCountry', 'FR']])).status).toBe(401);
    // ::1 is DE in the database, but it is a proxy here: without its header there is no country.
    expect((await request(v6.port, peer6, 'geo.localhost')).status).toBe(401);
  });

  it('looks an IPv6 peer up in the database when no proxy is trusted', async () => {
    expect((await request(databaseOnly6.port, peer6, 'geo.localhost')).status).toBe(200);
  });

  it('logs service-token decisions with their country and explanation', async () => {
    const api = await accessApi(v4.gateway);
    const ci = (await api('POST', '/service_tokens', { name: 'ci' })).body.result;
    const other = (await api('POST', '/service_tokens', { name: 'other' })).body.result;
    const app = await api('POST', '/apps', {
      type: 'self_hosted',
      name: 'svc',
      domain: 'svc.localhost',
      policies: [
        {
          name: 'CI from DE',
          decision: 'non_identity',
          include: [{ service_token: { token_id: ci.id } }],
          require: [{ geo: { country_code: 'DE' } }],
        },
      ],
    });
    expect(app.status).toBe(201);
    await v4.gateway.gateway.snapshot.refresh();
    const credentials = (token: { client_id: string; client_secret: string }): [string, string][] => [
      ['CF-Access-Client-Id', token.client_id],
      ['CF-Access-Client-Secret', token.client_secret],
      ['CF-IPCountry', 'DE'],
    ];
    expect((await request(v4.port, trusted4, 'svc.localhost', credentials(ci))).status).toBe(200);
    expect((await request(v4.port, trusted4, 'svc.localhost', credentials(other))).status).toBe(403);
    // The proxy writes its rows off the request path, every couple of seconds.
    const deadline = Date.now() + 10_000;
    let rows: { service_token_id: string }[] = [];
    while (rows.length < 2 && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 200));
      rows = (await api('GET', `/logs/access_requests?app_uid=${app.body.result.id}`)).body.result;
    }
    const byToken = new Map(rows.map((row) => [row.service_token_id, row]));
    expect(byToken.get(ci.id)).toMatchObject({
      action: 'service_token',
      allowed: true,
      country: 'DE',
      policy_trace: {
        decision: 'non_identity',
        steps: [{ name: 'CI from DE', matched: true, rule: 'include[0]' }],
      },
    });
    expect(byToken.get(other.id)).toMatchObject({
      allowed: false,
      policy_trace: {
        decision: 'deny',
        policy_id: null,
        steps: [{ name: 'CI from DE', matched: false, rule: 'include' }],
      },
    });
  });

  it('decides again when the client’s country changes under the same session, service or linked token', async () => {
    // The proxy remembers a credential's decision with the client facts it was made for
    // (src/proxy/proxy.ts rememberedDecision): a change of country must not reuse it.
    const api = await accessApi(v4.gateway);
    const ci = (await api('POST', '/service_tokens', { name: 'ci-memo' })).body.result;
    const wiki = (await api('POST', '/apps', { type: 'self_hosted', name: 'wiki', domain: 'wiki.localhost' }))
      .body.result;
    const fromDE = { geo: { country_code: 'DE' } };
    const app = await api('POST', '/apps', {
      type: 'self_hosted',
      name: 'staff',
      domain: 'staff.localhost',
      policies: [
        {
          name: 'CI from DE',
          decision: 'non_identity',
          include: [{ service_token: { token_id: ci.id } }],
          require: [fromDE],
        },
        {
          name: 'wiki tokens from DE',
          decision: 'non_identity',
          include: [{ linked_app_token: { app_uid: wiki.id } }],
          require: [fromDE],
        },
        {
          name: 'staff from DE',
          decision: 'allow',
          include: [{ email_domain: { domain: 'example.com' } }],
          require: [fromDE],
        },
      ],
    });
    expect(app.status).toBe(201);
    await v4.gateway.gateway.snapshot.refresh();
    const staff = app.body.result.policies[2];
    const identity = { type: 'app', sub: 'user-1', email: 'alice@example.com' };
    const mint = (claims: Record<string, unknown>) =>
      mintJwt(v4.gateway.gateway.keys, claims, {
        issuer: v4.gateway.url,
        expiresAt: Math.floor(Date.now() / 1000) + 600,
      });
    const session = await mint({
      ...identity,
      aud: [app.body.result.aud],
      policy_id: staff.id,
      policy_precedence: staff.precedence,
    });
    const linked = await mint({ ...identity, aud: [wiki.aud] });
    const credentials: Record<string, [string, string][]> = {
      session: [['Cookie', `CF_Authorization=${session}`]],
      service: [
        ['CF-Access-Client-Id', ci.client_id],
        ['CF-Access-Client-Secret', ci.client_secret],
      ],
      linked: [['Cf-Access-Token', linked]],
    };
    for (const [name, headers] of Object.entries(credentials)) {
      const from = (country: string) =>
        request(v4.port, trusted4, 'staff.localhost', [...headers, ['CF-IPCountry', country]]);
      const statuses = [];
      for (const country of ['DE', 'DE', 'FR', 'DE', 'FR']) statuses.push((await from(country)).status);
      expect(
        statuses.map((status) => status === 200),
        name,
      ).toEqual([true, true, false, true, false]);
    }
  });

  it('tells the origin only the country it believed, never the client’s own header', async () => {
    const seen = () => origin.seen.at(-1)!.headers['cf-ipcountry'];
    expect((await request(v4.port, untrusted4, 'open.localhost', [['CF-IPCountry', 'DE']])).status).toBe(200);
    expect(seen()).toBe('FR');
    expect((await request(v4.port, trusted4, 'open.localhost')).status).toBe(200);
    expect(seen()).toBeUndefined();
    expect((await request(v4.port, trusted4, 'open.localhost', [['CF-IPCountry', 'nl']])).status).toBe(200);
    expect(seen()).toBe('NL');
  });
});

describe('country source and its settings', () => {
  const source = createCountrySource({
    countryHeader: 'X-Country',
    trustedProxies: ['10.0.0.0/8', '2001:db8::/32'],
  })!;

  it('is off unless a header and trusted proxies, or a database, are configured', () => {
    expect(createCountrySource({})).toBeNull();
    expect(createCountrySource({ trustedProxies: ['10.0.0.0/8'] })).toBeNull();
  });

  it('refuses a database file that is not a MaxMind database', () => {
    const files = tempDir('gatehouse-mmdb-');
    try {
      const file = path.join(files.dir, 'junk.mmdb');
      writeFileSync(file, 'not a database');
      expect(() => createCountrySource({ geoipDatabase: file })).toThrow(ConfigError);
      expect(() => createCountrySource({ geoipDatabase: path.join(files.dir, 'missing.mmdb') })).toThrow(
        /cannot read geoipDatabase/,
      );
    } finally {
      files.cleanup();
    }
  });

  it('looks up IPv4, IPv4-mapped and IPv6 addresses in the database', () => {
    const files = tempDir('gatehouse-mmdb-');
    try {
      const geoipDatabase = path.join(files.dir, 'country.mmdb');
      writeFileSync(
        geoipDatabase,
        buildCountryDatabase({ '192.0.2.0/24': 'JP', '2001:db8::/32': 'br', '198.51.100.0/24': 'XX' }),
      );
      const lookup = createCountrySource({ geoipDatabase })!;
      expect(lookup('192.0.2.99', {})).toBe('JP');
      expect(lookup('::ffff:192.0.2.99', {})).toBe('JP');
      expect(lookup('::ffff:c000:263', {})).toBe('JP');
      expect(lookup('2001:db8:1::1', {})).toBe('BR');
      expect(lookup('203.0.113.1', {})).toBeUndefined();
      // "unknown" is no country.
      expect(lookup('198.51.100.1', {})).toBeUndefined();
    } finally {
      files.cleanup();
    }
  });

  it('believes only peers inside the trusted ranges, IPv4, IPv4-mapped and IPv6', () => {
    expect(source('10.1.2.3', { 'x-country': 'ch' })).toBe('CH');
    expect(source('::ffff:10.1.2.3', { 'x-country': 'CH' })).toBe('CH');
    expect(source('2001:db8::1', { 'x-country': 'CH' })).toBe('CH');
    expect(source('11.1.2.3', { 'x-country': 'CH' })).toBeUndefined();
    expect(source('2001:db9::1', { 'x-country': 'CH' })).toBeUndefined();
    expect(source('::1', { 'x-country': 'CH' })).toBeUndefined();
    expect(source('not an address', { 'x-country': 'CH' })).toBeUndefined();
    // The configured header only: CF-IPCountry means nothing here.
    expect(source('10.1.2.3', { 'cf-ipcountry': 'CH' })).toBeUndefined();
  });

  it('reads trustedProxies as a list from the environment and validates it', () => {
    const settings = loadSettings(
      { dataDir: '/tmp/unused' },
      {
        GATEHOUSE_TRUSTED_PROXIES: '10.0.0.0/8, 2001:db8::/32,192.0.2.1',
        GATEHOUSE_COUNTRY_HEADER: 'CF-IPCountry',
      },
    );
    expect(settings.trustedProxies).toEqual(['10.0.0.0/8', '2001:db8::/32', '192.0.2.1']);
    expect(settings.countryHeader).toBe('CF-IPCountry');
    for (const bad of ['10.0.0.0/33', '::1/129', 'example.com', '10.0.0.0/8/1', '']) {
      expect(
        () => loadSettings({}, { GATEHOUSE_TRUSTED_PROXIES: bad, GATEHOUSE_COUNTRY_HEADER: 'CF-IPCountry' }),
        bad,
      ).toThrow(/trustedProxies/);
    }
    expect(() => loadSettings({}, { GATEHOUSE_COUNTRY_HEADER: 'CF IPCountry' })).toThrow(/countryHeader/);
  });

  it('refuses a country header without trusted proxies: any client could set it', () => {
    expect(() => loadSettings({}, { GATEHOUSE_COUNTRY_HEADER: 'CF-IPCountry' })).toThrow(ConfigError);
    expect(() => loadSettings({}, { GATEHOUSE_COUNTRY_HEADER: 'CF-IPCountry' })).toThrow(/trustedProxies/);
  });
});
