// /accounts/{account_id}/access/apps: list, create, get, full replace, delete, revoke_tokens
// (spec §1.3, §2).
import { randomUUID } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { randomHex, sha256Hex } from '../keys/secrets.ts';
import { precedenceProblems } from '../policy/index.ts';
import type { StoredApp } from '../store/repositories/apps.ts';
import type { PolicyContent, PolicyLink } from '../store/repositories/policies.ts';
import { nowIso, type Tx } from '../store/store.ts';
import { parseAppBody } from './apps-schema.ts';
import { invalidRequest, notFound, parseInput } from './errors.ts';
import { type ApiContext, defineRoute, idParam } from './framework.ts';
import { pageQueryShape, pageWindow, resultInfo } from './pagination.ts';
import { assertAccessConfigValid, parsePolicyBody, toPolicyContent } from './policy-validation.ts';
import { appJson } from './serialize.ts';

export const listQuery = z.strictObject({
  ...pageQueryShape(25),
  name: z.string().max(350).optional(),
  domain: z.string().max(1277).optional(),
  aud: z.string().max(64).optional(),
  search: z.string().max(350).optional(),
  exact: z
    .enum(['true', 'false'])
    .transform((value) => value === 'true')
    .optional(),
});

export function registerAppRoutes(app: FastifyInstance, ctx: ApiContext): void {
  const { repos } = ctx.gateway;

  defineRoute(app, 'apps.list', async (request) => {
    const query = parseInput(listQuery, request.query, 'query');
    const { page, per_page, ...filter } = query;
    const { items, total } = await repos.apps.list(ctx.accountId, filter, pageWindow(query));
    const policies = await repos.policies.listForApps(items.map((stored) => stored.id));
    const result = items.map((stored) => appJson(stored, policies.get(stored.id) ?? []));
    return { result, resultInfo: resultInfo(query, result.length, total) };
  });

  defineRoute(app, 'apps.create', async (request) => {
    const parsed = parseAppBody(request.body);
    const id = randomUUID();
    // Cloudflare's AUD tag and OIDC client credentials are 64 hex characters.
    const clientSecret = parsed.content.type === 'saas' ? randomHex(32) : undefined;
    const stored = await ctx.write(request, 'app', async (tx, changed) => {
      await repos.apps.insert(
        tx,
        {
          id,
          accountId: ctx.accountId,
          aud: randomHex(32),
          ...(clientSecret !== undefined && {
            clientId: randomHex(32),
            clientSecretHash: sha256Hex(clientSecret),
          }),
        },
        parsed.content,
      );
      const created = (await repos.apps.get(ctx.accountId, id, tx))!;
      await assertIdpsExist(ctx, tx, parsed.content.config.allowed_idps);
      await writePolicyList(ctx, tx, created, parsed.policies ?? []);
      await assertAccessConfigValid(ctx, tx);
      changed({ table: 'apps', accountId: ctx.accountId, id });
      return { resourceId: id, value: await loadAppJson(ctx, tx, id, clientSecret) };
    });
    return { status: 201, result: stored };
  });

  defineRoute(app, 'apps.get', async (request) => {
    const id = idParam(request, 'app_id', 'application');
    const stored = await repos.apps.get(ctx.accountId, id);
    if (!stored) throw notFound('application', id);
    return { result: appJson(stored, await repos.policies.listForApp(id)) };
  });

  defineRoute(app, 'apps.update', async (request) => {
    const id = idParam(request, 'app_id', 'application');
    const parsed = parseAppBody(request.body);
    const result = await ctx.write(request, 'app', async (tx, changed) => {
      const existing = await lockApp(ctx, tx, id);
      if (existing.type !== parsed.content.type) {
        throw invalidRequest(`type: an app's type cannot be changed (this app is ${existing.type})`);
      }
      await repos.apps.replace(tx, id, parsed.content);
      await assertIdpsExist(ctx, tx, parsed.content.config.allowed_idps);
      // Policies are replaced only when the field is sent: app-scoped policies have their own
      // endpoints, and dropping them because a client left the field out would delete them.
      if (parsed.policies !== undefined) await writePolicyList(ctx, tx, existing, parsed.policies);
      await assertAccessConfigValid(ctx, tx);
      changed({ table: 'apps', accountId: ctx.accountId, id });
      return { resourceId: id, value: await loadAppJson(ctx, tx, id) };
    });
    return { result };
  });

  defineRoute(app, 'apps.delete', async (request) => {
    const id = idParam(request, 'app_id', 'application');
    await ctx.write(request, 'app', async (tx, changed) => {
      await lockApp(ctx, tx, id);
      await repos.apps.delete(tx, id);
      // Refused when a linked_app_token rule still names this app: with the app gone, an
      // exclude of it would silently stop excluding.
      await assertAccessConfigValid(ctx, tx);
      changed({ table: 'apps', accountId: ctx.accountId, id });
      return { resourceId: id, value: undefined };
    });
    return { status: 202, result: { id } };
  });

  defineRoute(app, 'apps.revoke_tokens', async (request) => {
    const id = idParam(request, 'app_id', 'application');
    await ctx.write(request, 'app', async (tx, changed) => {
      await lockApp(ctx, tx, id);
      await repos.apps.revokeTokens(tx, id, nowIso());
      changed({ table: 'apps', accountId: ctx.accountId, id });
      return { resourceId: id, value: undefined };
    });
    return { status: 202, result: null };
  });
}

/**
 * `allowed_idps` must name identity providers of the account: an id that names nothing would
 * offer no login at all, or a stale one, silently (spec §2.1: empty means every IdP).
 */
async function assertIdpsExist(ctx: ApiContext, tx: Tx, ids: readonly string[]): Promise<void> {
  if (ids.length === 0) return;
  const known = new Set(
    (await ctx.gateway.repos.identityProviders.listAll(ctx.accountId, tx)).map((idp) => idp.id),
  );
  const index = ids.findIndex((id) => !known.has(id));
  if (index !== -1) {
    throw invalidRequest(
      `allowed_idps.${index}: identity provider ${ids[index]} does not exist; list the account's providers with GET /access/identity_providers`,
    );
  }
}

/** Locks the app row for the rest of the transaction and returns the app, or throws 404. */
export async function lockApp(ctx: ApiContext, tx: Tx, id: string): Promise<StoredApp> {
  const { repos } = ctx.gateway;
  if (!(await repos.apps.lock(tx, ctx.accountId, id))) throw notFound('application', id);
  return (await repos.apps.get(ctx.accountId, id, tx))!;
}

export async function loadAppJson(ctx: ApiContext, tx: Tx, id: string, clientSecret?: string) {
  const { repos } = ctx.gateway;
  const stored = (await repos.apps.get(ctx.accountId, id, tx))!;
  return appJson(stored, await repos.policies.listForApp(id, tx), clientSecret);
}

const policyLink = z.strictObject({
  id: z.guid({ error: 'expected a policy UUID' }),
  precedence: z.int().min(0).max(1_000_000).optional(),
});

/** Fields whose presence makes a `policies` entry an inline policy rather than a link. */
const CONTENT_FIELDS = ['name', 'decision', 'include', 'exclude', 'require', 'session_duration'];

/**
 * Replaces the app's policy list from the `policies` field (spec §2.1): string ids, `{id,
 * precedence}` links, or inline app-only policies, not reusable and inline mixed. Without a
 * precedence an entry comes after the one before it. App-scoped policies of this app that are
 * no longer listed are deleted. The caller then checks the whole configuration.
 */
async function writePolicyList(
  ctx: ApiContext,
  tx: Tx,
  app: StoredApp,
  entries: readonly unknown[],
): Promise<void> {
  const { repos } = ctx.gateway;
  const links: PolicyLink[] = [];
  const seen = new Set<string>();
  let reusableCount = 0;
  let inlineCount = 0;
  let previous = 0;
  for (const [index, entry] of entries.entries()) {
    const where = `policies.${index}`;
    const next = (precedence: number | undefined) => {
      previous = precedence ?? previous + 1;
      return previous;
    };
    const isLink =
      typeof entry === 'string' || (typeof entry === 'object' && entry !== null && 'id' in entry);
    if (!isLink) {
      const input = parsePolicyBody(entry, where);
      const policyId = randomUUID();
      await repos.policies.insert(
        tx,
        { id: policyId, accountId: ctx.accountId, appId: app.id },
        toPolicyContent(input),
      );
      links.push({ policyId, precedence: next(input.precedence) });
      inlineCount++;
      continue;
    }
    const object = typeof entry === 'string' ? { id: entry } : (entry as Record<string, unknown>);
    const hasContent = CONTENT_FIELDS.some((field) => field in object);
    const link = parseInput(policyLink, { id: object.id, precedence: object.precedence }, where);
    const policy = await repos.policies.get(ctx.accountId, link.id.toLowerCase(), tx);
    if (!policy) throw invalidRequest(`${where}: policy ${link.id} does not exist`);
    if (policy.appId !== null && policy.appId !== app.id) {
      throw invalidRequest(
        `${where}: policy ${policy.id} belongs to another application; make it reusable first`,
      );
    }
    if (hasContent) {
      // A GET body PUT back carries full policy objects: fine when unchanged, refused when
      // edited, because an edit here would otherwise be silently dropped.
      const { precedence: _p, ...content } = object;
      const sent = toPolicyContent(parsePolicyBody(content, where));
      const unchanged = (Object.keys(sent) as (keyof PolicyContent)[]).every(
        (key) => JSON.stringify(sent[key]) === JSON.stringify(policy[key]),
      );
      if (!unchanged) {
        throw invalidRequest(
          `${where}: policy ${policy.id} differs from the stored policy; change it with PUT ${policy.appId === null ? '/access/policies' : `/access/apps/${app.id}/policies`}/${policy.id}, and list it here by id`,
        );
      }
    }
    if (seen.has(policy.id)) throw invalidRequest(`${where}: policy ${policy.id} is listed twice`);
    seen.add(policy.id);
    if (policy.appId === null) reusableCount++;
    links.push({ policyId: policy.id, precedence: next(link.precedence) });
  }
  if (reusableCount > 0 && inlineCount > 0) {
    throw invalidRequest('policies: reusable and inline policies may not be mixed');
  }
  const duplicate = precedenceProblems(links, '/policies')[0];
  if (duplicate)
    throw invalidRequest(`policies.${duplicate.path.split('/')[2]}: policy precedences must be unique`);
  const before = await repos.policies.listForApp(app.id, tx);
  await repos.policies.setLinks(tx, ctx.accountId, app.id, links);
  const kept = new Set(links.map((link) => link.policyId));
  for (const policy of before) {
    if (policy.appId === app.id && !kept.has(policy.id)) await repos.policies.delete(tx, policy.id);
  }
}
