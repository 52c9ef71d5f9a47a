// Validation of Access application bodies (POST and PUT /access/apps), spec §2. PUT is a full
// replace (spec §1.1: "PUT replaces the whole object"), so every field has its default here and
// an omitted field returns to it. Only `self_hosted` and OIDC `saas` apps exist in Gatehouse.
import { z } from 'zod';
import { parseGoDuration } from '../policy/index.ts';
import {
  MAX_NAME_LENGTH,
  MAX_POLICIES_PER_APP,
  MAX_SESSION_DURATION_MS,
  MAX_URL_LENGTH,
} from '../policy/limits.ts';
import type { AppContent } from '../store/repositories/apps.ts';
import { invalidRequest, parseInput } from './errors.ts';
import { asksForMfa, enablesScim, type FieldScreen, isSet, isTrue, screenFields } from './fields.ts';

export const SUPPORTED_APP_TYPES = ['self_hosted', 'saas'] as const;

/** Longest path part of a destination such as `wiki.example.com/docs/*`. */
const MAX_PATH_LENGTH = 1024;
const MAX_DESTINATIONS = 50;
const MAX_LIST = 50;

const LABEL = '[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?';
/** `host[/path]`, the host optionally `*.`-prefixed; no scheme, port, query or fragment (spec §3.3 "Path precedence"). */
const DESTINATION = new RegExp(`^(?:\\*\\.)?${LABEL}(?:\\.${LABEL})*(?:/[^\\s?#]*)?$`, 'i');

const destinationUri = z
  .string()
  .max(253 + MAX_PATH_LENGTH)
  .refine(
    (value) => DESTINATION.test(value) && value.split('/')[0]!.length <= 253,
    'expected host[/path] such as wiki.example.com or *.example.com/docs, without scheme, port or query',
  )
  // Host names are case-insensitive; paths are not.
  .transform((value) => {
    const slash = value.indexOf('/');
    return slash === -1 ? value.toLowerCase() : value.slice(0, slash).toLowerCase() + value.slice(slash);
  });

function isHttpUrl(value: string): boolean {
  if (!URL.canParse(value)) return false;
  const url = new URL(value);
  return (
    (url.protocol === 'https:' || url.protocol === 'http:') && url.username === '' && url.password === ''
  );
}

export const httpUrl = z.string().max(MAX_URL_LENGTH).refine(isHttpUrl, 'expected an absolute http(s) URL');

export const goDuration = (max: number, maxText: string) =>
  z.string().refine((value) => {
    const ms = parseGoDuration(value);
    return ms !== null && ms <= max;
  }, `expected a Go duration such as 24h or 2h45m (units ns, us, ms, s, m, h), at most ${maxText}`);

/** Durations in whole minutes, hours (and days) such as `5m`, `24h` or `90d` (spec §2.2). */
function unitDuration(units: string, minMinutes: number, maxMinutes: number, range: string) {
  const pattern = new RegExp(`^(\\d{1,6})([${units}])$`);
  const minutes = { m: 1, h: 60, d: 1440 } as const;
  return z.string().refine(
    (value) => {
      const match = pattern.exec(value);
      if (!match) return false;
      const total = Number(match[1]) * minutes[match[2] as keyof typeof minutes];
      return total >= minMinutes && total <= maxMinutes;
    },
    `expected a number followed by ${units.split('').join(', ')} (e.g. 5m), ${range}`,
  );
}

const idList = z.array(z.guid({ error: 'expected a UUID' })).max(MAX_LIST);
/** IdP ids, lower-cased: the login compares them with stored ids as they are. */
const idpIdList = z
  .array(z.guid({ error: 'expected an identity provider UUID' }).transform((id) => id.toLowerCase()))
  .max(MAX_LIST);

const commonShape = {
  name: z.string().trim().min(1, 'must not be empty').max(MAX_NAME_LENGTH).optional(),
  allowed_idps: idpIdList.default([]),
  auto_redirect_to_identity: z.boolean().default(false),
  app_launcher_visible: z.boolean().default(true),
  logo_url: httpUrl.optional(),
  tags: z.array(z.string().min(1).max(255)).max(MAX_LIST).default([]),
  custom_pages: idList.default([]),
  /** Parsed by apps.ts: ids, `{id, precedence}` links or inline policies. */
  policies: z.array(z.unknown()).max(MAX_POLICIES_PER_APP).optional(),
};

const corsHeaders = z.strictObject({
  allow_all_headers: z.boolean().default(false),
  allow_all_methods: z.boolean().default(false),
  allow_all_origins: z.boolean().default(false),
  allow_credentials: z.boolean().default(false),
  allowed_headers: z
    .array(z.string().regex(/^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,128}$/))
    .max(MAX_LIST)
    .default([]),
  allowed_methods: z
    .array(z.enum(['GET', 'POST', 'HEAD', 'PUT', 'DELETE', 'CONNECT', 'OPTIONS', 'TRACE', 'PATCH']))
    .max(9)
    .default([]),
  allowed_origins: z.array(httpUrl).max(MAX_LIST).default([]),
  max_age: z.int().min(-1).max(86_400).optional(),
});

/** A DCR redirect URI: http(s) may end in `/*`; custom schemes match exactly; no credentials or fragment (spec §2.5). */
function isAllowedRedirectUri(value: string): boolean {
  const candidate = value.endsWith('/*') ? value.slice(0, -1) : value;
  if (!URL.canParse(candidate)) return false;
  const url = new URL(candidate);
  if (url.username !== '' || url.password !== '' || url.hash !== '' || value.includes('#')) return false;
  return value.endsWith('/*') ? url.protocol === 'http:' || url.protocol === 'https:' : !value.includes('*');
}

const oauthConfiguration = z.strictObject({
  // "enabled (default true when the object is present)" (spec §2.5).
  enabled: z.boolean().default(true),
  dynamic_client_registration: z
    .strictObject({
      enabled: z.boolean().default(false),
      allow_any_on_localhost: z.boolean().default(false),
      allow_any_on_loopback: z.boolean().default(false),
      allowed_uris: z
        .array(
          z
            .string()
            .max(MAX_URL_LENGTH)
            .refine(
              isAllowedRedirectUri,
              'expected an absolute URI; only http(s) URIs may end in /*; no wildcards elsewhere, credentials or fragments',
            ),
        )
        .max(100)
        .default([]),
    })
    .prefault({}),
  grant: z
    .strictObject({
      access_token_lifetime: unitDuration('mh', 1, 24 * 60, 'from 1m to 24h').optional(),
      session_duration: goDuration(MAX_SESSION_DURATION_MS, '730h').optional(),
    })
    .prefault({}),
});

const destination = z.strictObject({
  type: z
    .string()
    .refine(
      (type) => type === 'public',
      'only public destinations are supported; Gatehouse has no private network, MCP portal or Worker routing',
    )
    .default('public'),
  uri: destinationUri,
});

export const selfHostedSchema = z
  .strictObject({
    type: z.literal('self_hosted'),
    ...commonShape,
    domain: destinationUri.optional(),
    destinations: z.array(destination).min(1).max(MAX_DESTINATIONS).optional(),
    self_hosted_domains: z.array(destinationUri).min(1).max(MAX_DESTINATIONS).optional(),
    session_duration: goDuration(MAX_SESSION_DURATION_MS, '730h').default('24h'),
    custom_deny_message: z.string().max(1024).optional(),
    custom_deny_url: httpUrl.optional(),
    custom_non_identity_deny_url: httpUrl.optional(),
    http_only_cookie_attribute: z.boolean().default(true),
    same_site_cookie_attribute: z.enum(['none', 'lax', 'strict']).default('none'),
    path_cookie_attribute: z.boolean().default(false),
    enable_binding_cookie: z.boolean().default(false),
    eager_redirect_cookie_setting: z.boolean().default(true),
    service_auth_401_redirect: z.boolean().default(false),
    read_service_tokens_from_header: z
      .string()
      .regex(/^[A-Za-z0-9-]{1,64}$/, 'expected an HTTP header name')
      .optional(),
    options_preflight_bypass: z.boolean().default(false),
    cors_headers: corsHeaders.optional(),
    skip_interstitial: z.boolean().default(false),
    allow_iframe: z.boolean().default(false),
    oauth_configuration: oauthConfiguration.optional(),
  })
  .superRefine((app, ctx) => {
    if (app.options_preflight_bypass && app.cors_headers !== undefined) {
      ctx.addIssue({
        code: 'custom',
        path: ['options_preflight_bypass'],
        message: 'cannot be combined with cors_headers: pick one way to answer CORS preflight requests',
      });
    }
    if (app.domain === undefined && app.destinations === undefined && app.self_hosted_domains === undefined) {
      ctx.addIssue({
        code: 'custom',
        path: ['domain'],
        message: 'required for self_hosted apps (or give destinations)',
      });
    }
  });

const GRANT_TYPES = ['authorization_code', 'authorization_code_with_pkce', 'refresh_tokens'] as const;
const grantType = z
  .string()
  .refine(
    (value): value is (typeof GRANT_TYPES)[number] => (GRANT_TYPES as readonly string[]).includes(value),
    `expected one of ${GRANT_TYPES.join(', ')}; Gatehouse does not offer the hybrid and implicit flows`,
  );

const oidcSaasAppSchema = z
  .strictObject({
    auth_type: z
      .string()
      .refine((value) => value === 'oidc', 'only "oidc" SaaS apps are supported; Gatehouse has no SAML'),
    redirect_uris: z.array(httpUrl).max(MAX_LIST).default([]),
    grant_types: z.array(grantType).min(1).max(3).optional(),
    grant_type: z.array(grantType).min(1).max(3).optional(),
    scopes: z
      .array(z.enum(['openid', 'email', 'profile', 'groups']))
      .max(4)
      .default(['openid', 'email', 'profile']),
    allow_pkce_without_client_secret: z.boolean().default(false),
    access_token_lifetime: unitDuration('mh', 1, 24 * 60, 'from 1m to 24h').default('5m'),
    refresh_token_options: z
      .strictObject({
        lifetime: unitDuration('mhd', 2, 365 * 1440, 'more than 1m and at most 365d').default('90d'),
      })
      .prefault({}),
    custom_claims: z
      .array(
        z.strictObject({
          name: z.string().regex(/^[A-Za-z0-9_.:-]{1,128}$/, 'expected a claim name'),
          required: z.boolean().default(false),
          scope: z.enum(['openid', 'email', 'profile', 'groups']).default('profile'),
          source: z.strictObject({
            name: z.string().min(1).max(256),
            name_by_idp: z.record(z.guid(), z.string().min(1).max(256)).optional(),
          }),
        }),
      )
      .max(MAX_LIST)
      .default([]),
    group_filter_regex: z
      .string()
      .max(256)
      .refine((value) => {
        try {
          new RegExp(value);
          return true;
        } catch {
          return false;
        }
      }, 'expected a regular expression')
      .optional(),
    app_launcher_url: httpUrl.optional(),
  })
  .superRefine((saas, ctx) => {
    if (saas.grant_types !== undefined && saas.grant_type !== undefined) {
      ctx.addIssue({
        code: 'custom',
        path: ['grant_type'],
        message: 'give grant_types or grant_type, not both',
      });
    }
    const grants = saas.grant_types ?? saas.grant_type ?? ['authorization_code'];
    if (saas.allow_pkce_without_client_secret && !grants.includes('authorization_code_with_pkce')) {
      ctx.addIssue({
        code: 'custom',
        path: ['allow_pkce_without_client_secret'],
        message: 'needs the authorization_code_with_pkce grant type',
      });
    }
  });

export const saasSchema = z.strictObject({
  type: z.literal('saas'),
  ...commonShape,
  name: commonShape.name.unwrap(),
  saas_app: z.unknown(),
});

const READ_ONLY_APP_FIELDS = ['id', 'uid', 'aud', 'account_id', 'created_at', 'updated_at'];

const UNENFORCED_APP_FIELDS: FieldScreen['unenforced'] = {
  mfa_config: { promises: asksForMfa, why: 'per-app MFA requirements would not be enforced' },
  scim_config: { promises: enablesScim, why: 'SCIM provisioning is not implemented' },
  allow_authenticate_via_warp: {
    promises: isTrue,
    why: 'there is no WARP client session to authenticate with',
  },
  use_clientless_isolation_app_launcher_url: { promises: isTrue, why: 'there is no browser isolation' },
};

const SAAS_APP_SCREEN: FieldScreen = {
  accepted: Object.keys(oidcSaasAppSchema.shape),
  readOnly: ['client_id', 'public_key', 'created_at', 'updated_at'],
  unenforced: {
    client_secret: {
      promises: isSet,
      why: 'the client secret is generated by Gatehouse and shown only in the create response',
    },
    hybrid_and_implicit_options: {
      promises: (value) => isSet(value) && Object.values(value as object).some(isTrue),
      why: 'the hybrid and implicit flows are not offered',
    },
  },
};

/** Null means "not set" in Cloudflare's objects; treating it as absent lets clients send either. */
function withoutNulls(value: unknown): unknown {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return value;
  return Object.fromEntries(Object.entries(value).filter(([, field]) => field !== null));
}

export interface ParsedApp {
  content: AppContent;
  /** Raw `policies` entries, or undefined when the field was not sent. */
  policies: unknown[] | undefined;
}

/** Validates a create or full-replace body into the stored form, with defaults for omitted fields. */
export function parseAppBody(body: unknown): ParsedApp {
  const parsed = parseAppContent(body);
  const { auto_redirect_to_identity, allowed_idps } = parsed.content.config;
  // Skipping the IdP picker needs exactly one IdP to skip to [TS: auto_redirect_to_identity].
  if (auto_redirect_to_identity && allowed_idps.length !== 1) {
    throw invalidRequest('auto_redirect_to_identity: needs exactly one identity provider in allowed_idps');
  }
  return parsed;
}

function parseAppContent(body: unknown): ParsedApp {
  const raw = withoutNulls(body);
  const type = (raw as { type?: unknown } | undefined)?.type;
  if (typeof type !== 'string' || !(SUPPORTED_APP_TYPES as readonly string[]).includes(type)) {
    throw invalidRequest(
      `type: ${typeof type === 'string' ? `"${type.slice(0, 64)}" is not supported by Gatehouse; ` : 'required; '}supported types: ${SUPPORTED_APP_TYPES.join(', ')}`,
    );
  }
  if (type === 'saas') {
    const screened = screenFields(raw, {
      accepted: Object.keys(saasSchema.shape),
      readOnly: READ_ONLY_APP_FIELDS,
      unenforced: UNENFORCED_APP_FIELDS,
    });
    const { saas_app: saasRaw, policies, ...app } = parseInput(saasSchema, screened);
    if (saasRaw === undefined) throw invalidRequest('saas_app: required for saas apps');
    const saas = parseInput(
      oidcSaasAppSchema,
      screenFields(withoutNulls(saasRaw), SAAS_APP_SCREEN, 'saas_app'),
      'saas_app',
    );
    const { grant_type, grant_types, ...rest } = saas;
    return {
      policies,
      content: {
        type: 'saas',
        name: app.name,
        config: {
          ...app,
          saas_app: {
            ...rest,
            auth_type: 'oidc',
            grant_types: [...new Set(grant_types ?? grant_type ?? ['authorization_code' as const])],
            scopes: [...new Set(saas.scopes)],
          },
        },
      },
    };
  }
  const screened = screenFields(raw, {
    accepted: Object.keys(selfHostedSchema.shape),
    readOnly: READ_ONLY_APP_FIELDS,
    unenforced: UNENFORCED_APP_FIELDS,
  });
  const {
    policies,
    type: _type,
    domain,
    destinations,
    self_hosted_domains,
    name,
    ...config
  } = parseInput(selfHostedSchema, screened);
  // `destinations` supersedes `self_hosted_domains`; when both are sent, destinations win (spec §2.1).
  const hosts = destinations?.map((d) => d.uri) ?? self_hosted_domains ?? [domain!];
  const unique = [...new Set(hosts)];
  return {
    policies,
    content: { type: 'self_hosted', name: name ?? unique[0]!, config: { ...config, destinations: unique } },
  };
}
