// /accounts/{account_id}/access/identity_providers (spec §1.3): the upstream IdPs users log in
// with. Gatehouse supports `onetimepin`, generic `oidc` and `github`; Cloudflare's other types
// (SAML, Okta, Azure AD…) are refused by name rather than stored and never used. The OAuth
// client secret is write-only: sealed with the master key (the login flow needs it in clear),
// never returned, and kept when a PUT leaves it out, since clients PUT back what they GET.
import { randomUUID } from 'node:crypto';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { identityProviderSecretBinding, sealSecret } from '../keys/sealed.ts';
import { MAX_NAME_LENGTH, MAX_VALUE_LENGTH } from '../policy/limits.ts';
import type {
  IdentityProviderContent,
  StoredIdentityProvider,
} from '../store/repositories/identity-providers.ts';
import type { Tx } from '../store/store.ts';
import { httpUrl } from './apps-schema.ts';
import { invalidRequest, notFound, parseInput } from './errors.ts';
import { enablesScim, type FieldScreen, screenFields } from './fields.ts';
import { type ApiContext, defineRoute, idParam } from './framework.ts';
import type { RouteSchemas } from './openapi.ts';
import { pageQueryShape, pageWindow, resultInfo } from './pagination.ts';

export const SUPPORTED_IDP_TYPES = ['onetimepin', 'oidc', 'github'] as const;
type IdpType = (typeof SUPPORTED_IDP_TYPES)[number];

const text = z.string().trim().min(1).max(MAX_VALUE_LENGTH);
const tokenList = z.array(z.string().regex(/^[\x21-\x7e]{1,256}$/, 'expected a scope or claim name')).max(50);

/** Per type: the config schema; `client_secret` is optional here and required on create. */
const configSchemas = {
  onetimepin: z.strictObject({}),
  oidc: z.strictObject({
    client_id: text,
    client_secret: text.optional(),
    auth_url: httpUrl,
    token_url: httpUrl,
    certs_url: httpUrl,
    scopes: tokenList.default(['openid', 'email', 'profile']),
    claims: tokenList.default([]),
    email_claim_name: z
      .string()
      .regex(/^[\x21-\x7e]{1,256}$/, 'expected a claim name')
      .default('email'),
    pkce_enabled: z.boolean().default(false),
  }),
  github: z.strictObject({ client_id: text, client_secret: text.optional() }),
} satisfies Record<IdpType, z.ZodType>;

/** Config fields Cloudflare returns that a client may send back: ignored. */
const CONFIG_READ_ONLY = ['redirect_url'];

const SCREEN: FieldScreen = {
  accepted: ['name', 'type', 'config'],
  readOnly: ['id', 'created_at', 'updated_at'],
  unenforced: {
    scim_config: {
      promises: enablesScim,
      why: 'SCIM provisioning is not implemented, so users and groups would never be synchronised',
    },
  },
};

const bodySchema = z.strictObject({
  name: z.string().trim().min(1).max(MAX_NAME_LENGTH),
  type: z.string(),
  config: z.record(z.string(), z.unknown()).default({}),
});

const listQuery = z.strictObject(pageQueryShape(25));

/** For the OpenAPI document: the body as one union of the supported types. */
const documentedBody = z.union(
  SUPPORTED_IDP_TYPES.map((type) =>
    z.object({ name: bodySchema.shape.name, type: z.literal(type), config: configSchemas[type] }),
  ),
);

export const identityProviderSchemas = {
  'identity_providers.list': { query: listQuery },
  'identity_providers.create': { body: documentedBody },
  'identity_providers.update': { body: documentedBody },
} satisfies RouteSchemas;

interface ParsedProvider {
  name: string;
  type: IdpType;
  config: Record<string, unknown>;
  clientSecret: string | undefined;
}

function parseProviderBody(body: unknown): ParsedProvider {
  const { name, type, config } = parseInput(bodySchema, screenFields(body, SCREEN));
  if (!(SUPPORTED_IDP_TYPES as readonly string[]).includes(type)) {
    throw invalidRequest(
      `type: "${type.slice(0, 64)}" is not supported by Gatehouse; supported types: ${SUPPORTED_IDP_TYPES.join(', ')}`,
    );
  }
  const withoutEcho = Object.fromEntries(
    Object.entries(config).filter(([key]) => !CONFIG_READ_ONLY.includes(key)),
  );
  const parsed = parseInput(configSchemas[type as IdpType], withoutEcho, 'config') as Record<string, unknown>;
  const { client_secret: clientSecret, ...rest } = parsed;
  return { name, type: type as IdpType, config: rest, clientSecret: clientSecret as string | undefined };
}

export function registerIdentityProviderRoutes(app: FastifyInstance, ctx: ApiContext): void {
  const { repos, masterKey, settings } = ctx.gateway;
  const providerId = (request: FastifyRequest) =>
    idParam(request, 'identity_provider_id', 'identity provider');

  /** The provider object; the client secret is never part of it. */
  const providerJson = (provider: StoredIdentityProvider) => ({
    id: provider.id,
    name: provider.name,
    type: provider.type,
    config: { ...provider.config, redirect_url: `${settings.teamDomain}/cdn-cgi/access/callback` },
    scim_config: { enabled: false },
    created_at: provider.createdAt,
    updated_at: provider.updatedAt,
  });

  /** The stored content for `parsed`; without a new secret, `keptSecret` (the stored one) stays. */
  const content = (
    id: string,
    parsed: ParsedProvider,
    keptSecret: string | null,
  ): IdentityProviderContent => {
    const { name, type, config } = parsed;
    if (type === 'onetimepin') return { name, type, config, clientSecretSealed: null };
    const sealed =
      parsed.clientSecret === undefined
        ? keptSecret
        : sealSecret(masterKey, parsed.clientSecret, identityProviderSecretBinding(id));
    if (sealed === null) throw invalidRequest('config.client_secret: required');
    return { name, type, config, clientSecretSealed: sealed };
  };

  /** Cloudflare allows one one-time PIN provider per account. */
  const assertSingleOneTimePin = async (tx: Tx) => {
    if ((await repos.identityProviders.countOfType(tx, ctx.accountId, 'onetimepin')) > 1) {
      throw invalidRequest(
        'type: the account already has a onetimepin identity provider; there can be only one',
      );
    }
  };

  const write = (request: FastifyRequest, id: string, fn: (tx: Tx) => Promise<void>) =>
    ctx.write(request, 'identity_provider', async (tx, changed) => {
      await fn(tx);
      changed({ table: 'identity_providers', accountId: ctx.accountId, id });
      const stored = await repos.identityProviders.get(ctx.accountId, id, tx);
      return { resourceId: id, value: providerJson(stored!) };
    });

  defineRoute(app, 'identity_providers.list', async (request) => {
    const query = parseInput(listQuery, request.query, 'query');
    const { items, total } = await repos.identityProviders.list(ctx.accountId, pageWindow(query));
    return { result: items.map(providerJson), resultInfo: resultInfo(query, items.length, total) };
  });

  defineRoute(app, 'identity_providers.create', async (request) => {
    const parsed = parseProviderBody(request.body);
    const id = randomUUID();
    const result = await write(request, id, async (tx) => {
      await repos.identityProviders.insert(tx, { id, accountId: ctx.accountId }, content(id, parsed, null));
      await assertSingleOneTimePin(tx);
    });
    return { status: 201, result };
  });

  defineRoute(app, 'identity_providers.get', async (request) => {
    const id = providerId(request);
    const stored = await repos.identityProviders.get(ctx.accountId, id);
    if (!stored) throw notFound('identity provider', id);
    return { result: providerJson(stored) };
  });

  defineRoute(app, 'identity_providers.update', async (request) => {
    const id = providerId(request);
    const parsed = parseProviderBody(request.body);
    const result = await write(request, id, async (tx) => {
      const existing = await repos.identityProviders.get(ctx.accountId, id, tx);
      if (!existing) throw notFound('identity provider', id);
      if (existing.type !== parsed.type) {
        throw invalidRequest(
          `type: an identity provider's type cannot be changed (this one is ${existing.type})`,
        );
      }
      if (
        !(await repos.identityProviders.replace(
          tx,
          ctx.accountId,
          id,
          content(id, parsed, existing.clientSecretSealed),
        ))
      ) {
        throw notFound('identity provider', id);
      }
    });
    return { result };
  });

  defineRoute(app, 'identity_providers.delete', async (request) => {
    const id = providerId(request);
    await ctx.write(request, 'identity_provider', async (tx, changed) => {
      // An app's allowed_idps must keep naming providers that exist (apps.ts), so a provider
      // an app offers cannot go first: the app would silently lose its login method.
      const users = (await repos.apps.listAll(ctx.accountId, tx)).filter((app) =>
        app.config.allowed_idps.includes(id),
      );
      if (users.length > 0) {
        throw invalidRequest(
          `identity provider ${id} is in allowed_idps of ${users.map((app) => `app "${app.name}" (${app.id})`).join(', ')}; remove it there first`,
        );
      }
      if (!(await repos.identityProviders.delete(tx, ctx.accountId, id)))
        throw notFound('identity provider', id);
      changed({ table: 'identity_providers', accountId: ctx.accountId, id });
      return { resourceId: id, value: undefined };
    });
    return { status: 202, result: { id } };
  });
}
