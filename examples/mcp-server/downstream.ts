// Calls to the wiki and the dashboard THROUGH Gatehouse, carrying the user's credential:
// - flow 1 (self-hosted MCP app): the assertion Gatehouse gave us, as `Cf-Access-Token`;
// - flow 2 (Access for SaaS): the user's Gatehouse access token, as `Authorization: Bearer`.
// Gatehouse checks the target app's linked_app_token policy and hands the origin an assertion
// for the same user (ARCHITECTURE.md §3 decisions 1-2), so the wiki records the user, not us.
import type { Fetch } from '../shared/connect.ts';

export type Credential = { kind: 'assertion'; token: string } | { kind: 'bearer'; token: string };

export interface DownstreamApp {
  /** A person's name for the app in messages ("the wiki"). */
  label: string;
  /** Public URL through Gatehouse, e.g. http://wiki.localhost:8080 */
  url: string;
}

/** A failure worded for the person at the MCP client; the tool returns it as an error result. */
export class ToolFailure extends Error {}

export async function callApp(
  fetchImpl: Fetch,
  app: DownstreamApp,
  credential: Credential,
  method: string,
  path: string,
  body?: unknown,
): Promise<unknown> {
  const headers: Record<string, string> = {
    accept: 'application/json',
    ...(credential.kind === 'assertion'
      ? { 'cf-access-token': credential.token }
      : { authorization: `Bearer ${credential.token}` }),
  };
  if (body !== undefined) headers['content-type'] = 'application/json';
  let response: Response;
  try {
    response = await fetchImpl(`${app.url.replace(/\/+$/, '')}${path}`, {
      method,
      headers,
      ...(body !== undefined && { body: JSON.stringify(body) }),
      redirect: 'manual',
      signal: AbortSignal.timeout(15_000),
    });
  } catch {
    throw new ToolFailure(`Could not reach ${app.label} through Gatehouse. Is the gateway running?`);
  }
  const text = await response.text();
  const data = parseJson(text);
  if (response.ok) return data;
  const detail = typeof data === 'object' && data !== null && 'error' in data ? String(data.error) : null;
  // Gatehouse answers 401 for a credential it does not accept (expired, revoked, forged) and
  // 403 when the target app's policies do not admit it (decision 5).
  if (response.status === 401 || (response.status >= 300 && response.status < 400)) {
    throw new ToolFailure(
      `Gatehouse did not accept your sign-in for ${app.label}: it has expired or been revoked. ` +
        'Sign in again from your MCP client (reconnect or re-authorize), then retry.',
    );
  }
  if (response.status === 403) {
    throw new ToolFailure(
      `You are signed in, but ${app.label} does not let this MCP server act for you ` +
        `(${detail ?? 'refused by its Access policy'}). Ask an administrator to allow it ` +
        '(a linked_app_token rule naming this MCP server on that app) if you should have access.',
    );
  }
  if (detail && response.status < 500) throw new ToolFailure(`${app.label}: ${detail}`);
  throw new ToolFailure(`${app.label} failed (HTTP ${response.status}). Try again later.`);
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}
