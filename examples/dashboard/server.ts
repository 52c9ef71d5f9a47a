// The admin dashboard: who can sign in (users) and what happened lately (access events), read
// from Gatehouse's management API with an API token, plus admins' notes on users, kept in its
// own JSON file under the email of the admin Gatehouse vouched for. Same trust model as the
// wiki: only a verified Cf-Access-Jwt-Assertion gets in.
import { existsSync, readFileSync } from 'node:fs';
import type http from 'node:http';
import { z } from 'zod';
import { createAccessVerifier } from '../shared/access.ts';
import { type Fetch, fetchVia } from '../shared/connect.ts';
import { writeFileAtomic } from '../shared/files.ts';
import { escapeHtml, HttpError, parse, readJson, sendHtml, sendJson } from '../shared/http.ts';
import { createOrigin, type Origin } from '../shared/origin.ts';

export interface DashboardOptions {
  /** JSON file for the dashboard's own notes. */
  dataFile: string;
  teamDomain: string;
  aud: string;
  gatewayListen?: string;
  /** Management API: `<team domain>/client/v4` (or the --api-listen address) and a token with
   * "Access: Organizations, Identity Providers, and Groups Read" and "Access: Audit Logs Read". */
  api: { baseUrl: string; accountId: string; token: string };
}

export interface DashboardUser {
  email: string;
  name: string;
  last_successful_login: string | null;
}
export interface AccessEvent {
  at: string;
  email: string | null;
  app: string | null;
  allowed: boolean;
  action: string;
  connection: string | null;
}

const noteInput = z.strictObject({
  subject: z.email().max(320),
  text: z.string().trim().min(1).max(2000),
});
const notesFile = z.object({
  notes: z.array(z.object({ subject: z.string(), text: z.string(), author: z.string(), at: z.string() })),
});
type Note = z.infer<typeof notesFile>['notes'][number];

const apiUsers = z.object({
  result: z.array(
    z.object({ email: z.string(), name: z.string().nullish(), last_successful_login: z.string().nullish() }),
  ),
});
const apiEvents = z.object({
  result: z.array(
    z.object({
      created_at: z.string(),
      user_email: z.string().nullish(),
      app_domain: z.string().nullish(),
      allowed: z.boolean(),
      action: z.string().nullish(),
      connection: z.string().nullish(),
    }),
  ),
});

export function createDashboard(options: DashboardOptions): Origin {
  const connect = fetchVia(options.gatewayListen);
  const verify = createAccessVerifier({ teamDomain: options.teamDomain, aud: options.aud, fetch: connect });
  let notes: Note[] = existsSync(options.dataFile)
    ? notesFile.parse(JSON.parse(readFileSync(options.dataFile, 'utf8'))).notes
    : [];
  const management = managementClient(connect, options.api);

  return createOrigin('Dashboard', verify, async (req, res, url, identity) => {
    const method = req.method ?? 'GET';
    const path = url.pathname;
    if (path === '/api/users' && method === 'GET')
      return sendJson(res, 200, { users: await management.users() });
    if (path === '/api/events' && method === 'GET') {
      const limit = Math.min(Math.max(Number(url.searchParams.get('limit')) || 25, 1), 100);
      return sendJson(res, 200, { events: await management.events(limit) });
    }
    if (path === '/api/notes' && method === 'GET') return sendJson(res, 200, { notes });
    if (path === '/api/notes' && method === 'POST') {
      const input = parse(noteInput, await readJson(req, 16 * 1024));
      const note = {
        ...input,
        subject: input.subject.toLowerCase(),
        author: identity.email,
        at: new Date().toISOString(),
      };
      const next = [...notes, note];
      writeFileAtomic(options.dataFile, JSON.stringify({ notes: next }));
      notes = next;
      return sendJson(res, 201, note);
    }
    if (path === '/' && method === 'GET') return home(res, identity.email);
    throw new HttpError(404, 'not found');
  });

  async function home(res: http.ServerResponse, email: string) {
    const [users, events] = await Promise.all([management.users(), management.events(25)]);
    const userRows = users
      .map(
        (u) =>
          `<tr><td>${escapeHtml(u.email)}</td><td>${escapeHtml(u.name)}</td><td>${u.last_successful_login ?? ''}</td></tr>`,
      )
      .join('');
    const eventRows = events
      .map(
        (e) =>
          `<tr><td>${e.at}</td><td>${escapeHtml(e.email ?? '')}</td><td>${escapeHtml(e.app ?? '')}</td><td>${e.allowed ? 'allowed' : 'blocked'}</td></tr>`,
      )
      .join('');
    sendHtml(
      res,
      200,
      'Dashboard',
      `<p>signed in as <strong id="me">${escapeHtml(email)}</strong></p><h1>Admin dashboard</h1>
<h2>Users</h2><table id="users"><tr><th>Email</th><th>Name</th><th>Last login</th></tr>${userRows}</table>
<h2>Recent access events</h2><table id="events"><tr><th>At</th><th>User</th><th>App</th><th>Outcome</th></tr>${eventRows}</table>`,
    );
  }
}

function managementClient(connect: Fetch, api: DashboardOptions['api']) {
  const base = `${api.baseUrl.replace(/\/+$/, '')}/accounts/${api.accountId}/access`;
  const get = async (path: string): Promise<unknown> => {
    const response = await connect(`${base}${path}`, {
      headers: { authorization: `Bearer ${api.token}`, accept: 'application/json' },
      signal: AbortSignal.timeout(10_000),
    });
    if (!response.ok) {
      // The token is the dashboard's configuration problem, not the visitor's.
      throw new HttpError(502, `Gatehouse's management API answered ${response.status} to the dashboard`);
    }
    return response.json();
  };
  return {
    async users(): Promise<DashboardUser[]> {
      const body = apiUsers.parse(await get('/users?per_page=100'));
      return body.result.map((u) => ({
        email: u.email,
        name: u.name ?? '',
        last_successful_login: u.last_successful_login ?? null,
      }));
    },
    async events(limit: number): Promise<AccessEvent[]> {
      const body = apiEvents.parse(await get(`/logs/access_requests?direction=desc&limit=${limit}`));
      return body.result.map((e) => ({
        at: e.created_at,
        email: e.user_email ?? null,
        app: e.app_domain ?? null,
        allowed: e.allowed,
        action: e.action ?? 'login',
        connection: e.connection ?? null,
      }));
    },
  };
}
