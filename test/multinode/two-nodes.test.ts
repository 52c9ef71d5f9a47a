// Two `gatehouse start` nodes on one PostgreSQL database behind a strictly alternating balancer
// (issue 9 on two nodes; test/multinode/cluster.test.ts runs three): a policy and a service-token
// rotation made on one node reach the other (times printed), a login whose steps alternate nodes
// succeeds and its cookie is refused on the other node within 2 s of revoke_tokens or logout,
// an OAuth code issued on one node is redeemed on the other, and a relying party's refreshes race
// across both ("safe concurrent refresh").
//
// "One successor family", precisely (src/oidc/refresh-succession.ts, src/oidc/adapter.ts): the
// family is the grant; rotating a refresh token R consumes R once (compare-and-set on
// consumed_at) and its successor's value is derived from R, so every refresh of R inside the
// grace window — concurrent, on any node, or a retry — answers with the same successor S, and the
// database holds exactly R (consumed) and S (unconsumed) for the grant: no forked, independently
// rotating branch. After the window a presentation of R is theft: the whole grant is revoked.
import { decodeJwt } from 'jose';
import * as oidc from 'openid-client';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sha256Hex } from '../../src/keys/secrets.ts';
import { REFRESH_REUSE_GRACE_MS } from '../../src/oidc/adapter.ts';
import type { Mailbox } from '../login/support.ts';
import { authorize, type OidcHarness, REDIRECT_URI, STAFF_POLICY } from '../oidc/support.ts';
import { Browser } from '../support/browser.ts';
import { postgresServerUrl, type TestDatabase } from '../support/databases.ts';
import {
  type Cluster,
  type ClusterWorld,
  hit,
  type Node,
  startClusterWorld,
  stopClusterWorld,
  WireBrowser,
  waitUntil,
} from './support.ts';

const reason = 'multi-node tests need PostgreSQL: set GATEHOUSE_TEST_DATABASE_URL';
const PARALLEL_REFRESHES = 50;
const WIKI = 'wiki.test';

interface TokenAnswer {
  status: number;
  // biome-ignore lint/suspicious/noExplicitAny: tests read arbitrary token-endpoint fields.
  body: any;
}

describe.skipIf(!postgresServerUrl)(
  `two nodes on one PostgreSQL database${postgresServerUrl ? '' : ` (skipped: ${reason})`}`,
  () => {
    let database: TestDatabase;
    let mailbox: Mailbox;
    let origin: ClusterWorld['origin'];
    let cluster: Cluster;
    let db: pg.Client;
    let appId: string;
    let clientId: string;
    let clientSecret: string;
    let issuer: string;
    let pinIdp: string;

    beforeAll(async () => {
      ({ database, mailbox, origin, cluster } = await startClusterWorld(2, [WIKI]));
      const idp = await cluster.api(cluster.nodes[0]!, 'POST', '/identity_providers', {
        name: 'PIN',
        type: 'onetimepin',
        config: {},
      });
      expect(idp.status).toBe(201);
      pinIdp = idp.body.result.id;
      db = new pg.Client({ connectionString: database.url });
      await db.connect();
    }, 300_000);

    afterAll(async () => {
      await db?.end();
      await stopClusterWorld({ database, mailbox, origin, cluster });
    });

    /** authorize() reads only the team domain, the mailbox and the PIN IdP of its harness. */
    const harness = () => ({ url: cluster.teamDomain, mailbox, pinIdp }) as unknown as OidcHarness;
    /** A browser whose every request goes through the balancer, so consecutive steps alternate nodes. */
    const browserViaBalancer = () => new Browser(cluster.balancer.port);

    /** A token-endpoint call on one node, authenticated as the app's client. */
    const token = async (node: Node, form: Record<string, string>): Promise<TokenAnswer> => {
      const answer = await new WireBrowser(node.base).request(`${issuer}/token`, {
        form,
        headers: {
          accept: 'application/json',
          authorization: `Basic ${Buffer.from(`${clientId}:${clientSecret}`).toString('base64')}`,
        },
      });
      return { status: answer.status, body: JSON.parse(answer.text) };
    };

    /** The refresh-token rows of a grant: which presented values they are, and whether consumed. */
    const refreshRows = async (grantId: string) =>
      (
        await db.query<{ id: string; consumed_at: string | null }>(
          `select id, consumed_at from oidc_payloads
            where namespace = $1 and model = 'RefreshToken' and grant_id = $2`,
          [appId, grantId],
        )
      ).rows;

    /** Rows of a grant: the Grant itself and every artefact issued under it. */
    const grantRows = async (grantId: string) =>
      Number(
        (
          await db.query<{ count: string }>(
            `select count(*) from oidc_payloads
              where namespace = $1 and (grant_id = $2 or (model = 'Grant' and id = $3))`,
            [appId, grantId, sha256Hex(grantId)],
          )
        ).rows[0]!.count,
      );

    const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
    const withToken = (token: { client_id: string; client_secret: string }) => ({
      'cf-access-client-id': token.client_id,
      'cf-access-client-secret': token.client_secret,
    });

    it('a policy changed on node A decides on node B; a service token rotated on B is refused on A within 2 s', async () => {
      const [a, b] = cluster.nodes as [Node, Node];
      const robot = (await cluster.api(a, 'POST', '/service_tokens', { name: 'robot' })).body.result;
      const staffOnly = { type: 'self_hosted', name: 'Wiki', domain: WIKI, policies: [STAFF_POLICY] };
      const wiki = await cluster.api(a, 'POST', '/apps', staffOnly);
      expect(wiki.status).toBe(201);
      // Known on B, and the robot is refused there: no policy lets it in yet.
      await waitUntil(
        async () => (await hit(b.base, WIKI, '/', withToken(robot))).status === 403,
        5000,
        'wiki',
      );

      const changed = await cluster.api(a, 'PUT', `/apps/${wiki.body.result.id}`, {
        ...staffOnly,
        policies: [
          STAFF_POLICY,
          { name: 'robots', decision: 'non_identity', include: [{ service_token: { token_id: robot.id } }] },
        ],
      });
      expect(changed.status).toBe(200);
      const policyMs = await waitUntil(
        async () => (await hit(b.base, WIKI, '/', withToken(robot))).status === 200,
        5000,
        'policy on B',
      );

      const rotated = await cluster.api(b, 'POST', `/service_tokens/${robot.id}/rotate`, {});
      expect(rotated.status).toBe(200);
      const rotatedMs = await waitUntil(
        async () => (await hit(a.base, WIKI, '/', withToken(robot))).status !== 200,
        2000,
        'old secret refused on A',
      );
      const renewed = { client_id: robot.client_id, client_secret: rotated.body.result.client_secret };
      expect((await hit(a.base, WIKI, '/', withToken(renewed))).status).toBe(200);
      console.log(
        `[multinode] two nodes: policy changed on A -> decided on B ${policyMs.toFixed(0)} ms after the API answered; service token rotated on B -> old secret refused on A in ${rotatedMs.toFixed(0)} ms`,
      );
      // The target is 1 s; the bound is generous for a loaded 2-core test machine.
      expect(policyMs).toBeLessThan(2000);
    });

    it('a login alternating nodes gets a cookie both accept; revoke_tokens on A and logout via the balancer are refused on B within 2 s', async () => {
      const [a, b] = cluster.nodes as [Node, Node];
      const wikiId = (await cluster.api(a, 'GET', '/apps')).body.result.find(
        (app: { domain: string }) => app.domain === WIKI,
      ).id as string;
      const login = async () => {
        const browser = browserViaBalancer();
        const before = cluster.balancer.served.map((count) => count);
        const done = await authorize(harness(), browser, `http://${WIKI}/docs`, 'erin@example.com');
        expect(done.location).toBe(`http://${WIKI}/docs`);
        // Every step went through the balancer, so both nodes served parts of the login.
        expect(cluster.balancer.served.every((count, i) => count - before[i]! >= 2)).toBe(true);
        const cookie = [...browser.jar.get(WIKI)!].map(([name, value]) => `${name}=${value}`).join('; ');
        for (const node of cluster.nodes) {
          const page = await hit(node.base, WIKI, '/docs', { cookie });
          expect(page.status).toBe(200);
          expect(JSON.parse(page.body)).toMatchObject({ email: 'erin@example.com' });
        }
        return { browser, cookie };
      };
      const refusedOn = (node: Node, cookie: string) =>
        waitUntil(
          async () => (await hit(node.base, WIKI, '/docs', { cookie })).status !== 200,
          2000,
          `cookie refused on node ${node.name}`,
        );

      const first = await login();
      expect((await cluster.api(a, 'POST', `/apps/${wikiId}/revoke_tokens`)).status).toBe(202);
      const revokeMs = await refusedOn(b, first.cookie);

      // Revocations have one-second precision (a token issued in the revoking second is refused
      // too), so the next login waits for the next second.
      await sleep(1100);
      const second = await login();
      const logout = await second.browser.request(`${cluster.teamDomain}/cdn-cgi/access/logout`);
      expect(logout.status).toBe(200);
      const logoutMs = await Promise.all(cluster.nodes.map((node) => refusedOn(node, second.cookie)));
      console.log(
        `[multinode] two nodes: revoke_tokens on A -> cookie refused on B in ${revokeMs.toFixed(0)} ms; logout -> refused on A in ${logoutMs[0]!.toFixed(0)} ms, on B in ${logoutMs[1]!.toFixed(0)} ms`,
      );
    });

    it('a SaaS app created on node A is served by node B (propagation time printed)', async () => {
      const [a, b] = cluster.nodes as [Node, Node];
      const created = performance.now();
      const app = await cluster.api(a, 'POST', '/apps', {
        type: 'saas',
        name: 'Racing RP',
        policies: [STAFF_POLICY],
        saas_app: {
          auth_type: 'oidc',
          redirect_uris: [REDIRECT_URI],
          grant_types: ['authorization_code_with_pkce', 'refresh_tokens'],
          scopes: ['openid', 'email'],
        },
      });
      expect(app.status).toBe(201);
      appId = app.body.result.id;
      clientId = app.body.result.saas_app.client_id;
      clientSecret = app.body.result.saas_app.client_secret;
      issuer = `${cluster.teamDomain}/cdn-cgi/access/sso/oidc/${clientId}`;
      const discovery = `/cdn-cgi/access/sso/oidc/${clientId}/.well-known/openid-configuration`;
      const elapsed = await waitUntil(
        async () => (await hit(b.base, cluster.teamHost, discovery)).status === 200,
        5000,
        'the app is known on node B',
      );
      console.log(
        `[multinode] SaaS app created on node A -> served by node B ${elapsed.toFixed(0)} ms after the API answered (${(performance.now() - created).toFixed(0)} ms with the API call)`,
      );
      expect(elapsed).toBeLessThan(2000);
    });

    it(`an OAuth code issued on one node is redeemed on the other; ${PARALLEL_REFRESHES} parallel refreshes over both yield one successor, and a replay after the grace window revokes the family`, async () => {
      const config = await oidc.discovery(new URL(issuer), clientId, undefined, oidc.None(), {
        execute: [oidc.allowInsecureRequests],
      });
      const verifier = oidc.randomPKCECodeVerifier();
      const url = oidc.buildAuthorizationUrl(config, {
        redirect_uri: REDIRECT_URI,
        scope: 'openid email',
        code_challenge: await oidc.calculatePKCECodeChallenge(verifier),
        code_challenge_method: 'S256',
      });
      const result = await authorize(harness(), browserViaBalancer(), url.href, 'dana@example.com');
      expect(result.location, result.text.slice(0, 500)).toMatch(/^https:\/\/rp\.example\.com\/callback\?/);
      const code = new URL(result.location!).searchParams.get('code')!;
      // The balancer began at node 0 and alternates, so the redirect carrying the code came from
      // node (requests - 1) mod 2; the code is redeemed on the other one.
      const requests = cluster.balancer.served.reduce((sum, count) => sum + count, 0);
      const issuedOn = (requests - 1) % cluster.nodes.length;
      const redeemOn = cluster.nodes[(issuedOn + 1) % cluster.nodes.length]!;
      const exchanged = await token(redeemOn, {
        grant_type: 'authorization_code',
        code,
        redirect_uri: REDIRECT_URI,
        code_verifier: verifier,
      });
      expect(exchanged.status, JSON.stringify(exchanged.body)).toBe(200);
      const original = exchanged.body.refresh_token as string;
      expect(original).toBeTruthy();
      const grantId = (
        await db.query<{ grant_id: string }>(
          `select grant_id from oidc_payloads where namespace = $1 and model = 'RefreshToken' and id = $2`,
          [appId, sha256Hex(original)],
        )
      ).rows[0]!.grant_id;
      expect(grantId).toBeTruthy();

      // The race: 50 refreshes of one token at once, alternating nodes.
      const answers = await Promise.all(
        Array.from({ length: PARALLEL_REFRESHES }, (_, i) =>
          token(cluster.nodes[i % cluster.nodes.length]!, {
            grant_type: 'refresh_token',
            refresh_token: original,
          }),
        ),
      );
      // No benign client is logged out: every one of them got tokens.
      const refused = answers.filter((answer) => answer.status !== 200);
      expect(refused.map((answer) => answer.body)).toEqual([]);
      // One successor: every response carries the same new refresh token…
      const successors = new Set(answers.map((answer) => answer.body.refresh_token as string));
      expect(successors.size).toBe(1);
      const [successor] = [...successors] as [string];
      expect(successor).not.toBe(original);
      // …and each its own access token, for that client and user.
      const accessClaims = answers.map((answer) => decodeJwt(answer.body.access_token as string));
      expect(new Set(accessClaims.map((claims) => claims.jti)).size).toBe(PARALLEL_REFRESHES);
      for (const claims of accessClaims) {
        expect(claims).toMatchObject({
          client_id: clientId,
          sub: accessClaims[0]!.sub,
          email: 'dana@example.com',
        });
      }
      // The database agrees: the grant holds the original, consumed once, and one successor.
      const rows = await refreshRows(grantId);
      expect(rows.map((row) => row.id).sort()).toEqual([sha256Hex(original), sha256Hex(successor)].sort());
      expect(rows.find((row) => row.id === sha256Hex(original))!.consumed_at).not.toBeNull();
      expect(rows.find((row) => row.id === sha256Hex(successor))!.consumed_at).toBeNull();
      const consumedAt = Number(rows.find((row) => row.id === sha256Hex(original))!.consumed_at);

      // A late retry inside the window (the client lost its response) gets the same successor.
      const retry = await token(cluster.nodes[1]!, { grant_type: 'refresh_token', refresh_token: original });
      expect(retry.status).toBe(200);
      expect(retry.body.refresh_token).toBe(successor);
      // The family moves on: the successor rotates normally, on either node.
      const next = await token(cluster.nodes[0]!, { grant_type: 'refresh_token', refresh_token: successor });
      expect(next.status).toBe(200);
      const latest = next.body.refresh_token as string;
      expect([original, successor]).not.toContain(latest);
      expect((await refreshRows(grantId)).length).toBe(3);

      // After the grace window, presenting the original again is a true replay (theft): refused,
      // and the whole family is revoked on every node, the newest token included.
      expect(await grantRows(grantId)).toBeGreaterThanOrEqual(4); // Grant + 3 refresh tokens
      const waitMs = consumedAt + REFRESH_REUSE_GRACE_MS + 500 - Date.now();
      await sleep(Math.max(0, waitMs));
      const replay = await token(cluster.nodes[0]!, { grant_type: 'refresh_token', refresh_token: original });
      expect(replay.status).toBe(400);
      expect(replay.body.error).toBe('invalid_grant');
      expect(await grantRows(grantId)).toBe(0);
      for (const node of cluster.nodes) {
        for (const presented of [successor, latest]) {
          const after = await token(node, { grant_type: 'refresh_token', refresh_token: presented });
          expect(after.status).toBe(400);
          expect(after.body.error).toBe('invalid_grant');
        }
      }
    }, 120_000);
  },
);
