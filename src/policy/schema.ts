// Validation of rules, policies, groups and lists in Cloudflare's API shapes (zod 4), for the
// management API and for compilePolicies, which re-validates whatever it is given. A rule that
// would silently never match (or always match) is refused here, with a message that says why.
import { z } from 'zod';
import { bodyProblems, decisionProblems } from './checks.ts';
import { parseGoDuration } from './duration.ts';
import { parseCidr, parseIp } from './ip.ts';
import {
  MAX_CIDR_LENGTH,
  MAX_DOMAIN_LENGTH,
  MAX_EMAIL_LENGTH,
  MAX_LIST_ITEMS,
  MAX_NAME_LENGTH,
  MAX_PRECEDENCE,
  MAX_RULES_PER_SECTION,
  MAX_SESSION_DURATION_MS,
  MAX_URL_LENGTH,
  MAX_VALUE_LENGTH,
} from './limits.ts';
import type { PolicyProblem } from './problems.ts';
import { UNSUPPORTED_SELECTORS } from './selectors.ts';

export {
  attachmentProblems,
  bodyProblems,
  decisionProblems,
  linkedAppProblems,
  precedenceProblems,
  referenceProblems,
} from './checks.ts';
export { groupGraphProblems } from './group-graph.ts';

const LABEL = '[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?';
const DOMAIN = new RegExp(`^${LABEL}(?:\\.${LABEL})*$`, 'i');

function isDomain(value: string): boolean {
  return value.length <= MAX_DOMAIN_LENGTH && DOMAIN.test(value);
}

/** local@domain with one "@" and no spaces; the domain must be a DNS name. */
function isEmailAddress(value: string): boolean {
  const at = value.indexOf('@');
  return at > 0 && at <= 64 && !/\s/.test(value.slice(0, at)) && isDomain(value.slice(at + 1));
}

/** https, or http to a loopback host (local development): identity leaves Gatehouse in the request. */
function isEndpointUrl(value: string): boolean {
  if (!URL.canParse(value)) return false;
  const url = new URL(value);
  if (url.username !== '' || url.password !== '' || url.hash !== '') return false;
  if (url.protocol === 'https:') return true;
  const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
  const address = parseIp(host);
  const loopback =
    host === 'localhost' ||
    (address?.family === 4 && address.value >>> 24 === 127) ||
    (address?.family === 6 && address.value === 1n);
  return url.protocol === 'http:' && loopback;
}

const text = (max: number) => z.string().min(1, 'must not be empty').max(max);
const uuid = z.guid({ error: 'expected a UUID' });
const emptyValue = z.strictObject({}, { error: 'expected an empty object {}' });
const endpointUrl = z
  .string()
  .max(MAX_URL_LENGTH)
  .refine(isEndpointUrl, 'expected an https:// URL without credentials (http:// only to localhost)');

/** The value object of each supported selector [TS: AccessRule; spec §3.2]. */
export const selectorValueSchemas = {
  email: z.strictObject({
    email: z
      .string()
      .max(MAX_EMAIL_LENGTH)
      .refine(isEmailAddress, 'expected an email address such as alice@example.com'),
  }),
  email_domain: z.strictObject({
    domain: z.string().refine(isDomain, 'expected a domain such as example.com, without "@"'),
  }),
  email_list: z.strictObject({ id: uuid }),
  everyone: emptyValue,
  ip: z.strictObject({
    ip: z
      .string()
      .max(MAX_CIDR_LENGTH)
      .refine(
        (value) => parseCidr(value) !== null,
        'expected an IPv4 or IPv6 address or CIDR block such as 192.0.2.0/24 or 2001:db8::/32',
      ),
  }),
  ip_list: z.strictObject({ id: uuid }),
  group: z.strictObject({ id: uuid }),
  login_method: z.strictObject({ id: uuid }),
  auth_method: z.strictObject({
    auth_method: z
      .string()
      .regex(/^[A-Za-z0-9_-]{1,64}$/, 'expected an RFC 8176 authentication method reference such as mfa'),
  }),
  oidc: z.strictObject({
    claim_name: text(MAX_VALUE_LENGTH),
    claim_value: text(MAX_VALUE_LENGTH),
    identity_provider_id: uuid,
  }),
  'github-organization': z.strictObject({
    name: text(MAX_VALUE_LENGTH),
    team: text(MAX_VALUE_LENGTH).optional(),
    identity_provider_id: uuid,
  }),
  geo: z.strictObject({
    country_code: z.string().regex(/^[A-Za-z]{2}$/, 'expected an ISO 3166-1 alpha-2 country code such as US'),
  }),
  certificate: emptyValue,
  common_name: z.strictObject({ common_name: text(MAX_VALUE_LENGTH) }),
  service_token: z.strictObject({ token_id: uuid }),
  any_valid_service_token: emptyValue,
  linked_app_token: z.strictObject({ app_uid: uuid }),
  external_evaluation: z.strictObject({ evaluate_url: endpointUrl, keys_url: endpointUrl }),
};

type SelectorValueSchemas = typeof selectorValueSchemas;
export type SelectorName = keyof SelectorValueSchemas;
export type SelectorValue<K extends SelectorName> = z.output<SelectorValueSchemas[K]>;
/** One-key rule objects exactly as Cloudflare's API has them, e.g. `{ ip: { ip: "10.0.0.0/8" } }`. */
export type Rule = { [K in SelectorName]: { readonly [P in K]: SelectorValue<K> } }[SelectorName];

function isSelectorName(key: string): key is SelectorName {
  return Object.hasOwn(selectorValueSchemas, key);
}

/**
 * Explains exactly what is wrong with a rule (a plain union would only say "invalid input").
 * Its issues stop parsing (`continue: false`), so policy-level checks never see a malformed rule.
 */
function checkRule(value: unknown, ctx: z.RefinementCtx): void {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    ctx.addIssue({
      code: 'custom',
      continue: false,
      message: 'a rule is an object with one selector key, e.g. {"everyone":{}}',
    });
    return;
  }
  const keys = Object.keys(value);
  const key = keys[0];
  if (keys.length !== 1 || key === undefined) {
    ctx.addIssue({
      code: 'custom',
      continue: false,
      message: `a rule has exactly one selector key, got ${keys.length}${keys.length > 0 ? ` (${keys.join(', ')})` : ''}`,
    });
    return;
  }
  if (Object.hasOwn(UNSUPPORTED_SELECTORS, key)) {
    ctx.addIssue({
      code: 'custom',
      continue: false,
      path: [key],
      message: `selector "${key}" is not supported by Gatehouse: ${UNSUPPORTED_SELECTORS[key]}`,
    });
    return;
  }
  if (!isSelectorName(key)) {
    ctx.addIssue({ code: 'custom', continue: false, path: [key], message: `unknown selector "${key}"` });
    return;
  }
  const result = selectorValueSchemas[key].safeParse((value as Record<string, unknown>)[key]);
  for (const issue of result.error?.issues ?? []) {
    ctx.addIssue({ code: 'custom', continue: false, path: [key, ...issue.path], message: issue.message });
  }
}

const ruleVariants = Object.entries(selectorValueSchemas).map(([key, schema]) =>
  z.strictObject({ [key]: schema }),
);

/**
 * One rule. The detailed check runs first; the union after it only gives the schema its type and
 * its JSON Schema (one strict object per selector).
 */
export const ruleSchema = z
  .unknown()
  .superRefine(checkRule)
  .pipe(z.union(ruleVariants as unknown as [z.ZodType<Rule>, ...z.ZodType<Rule>[]]));

export const ruleListSchema = z
  .array(ruleSchema)
  .max(MAX_RULES_PER_SECTION, `at most ${MAX_RULES_PER_SECTION} rules per include, require or exclude`);

const nameSchema = z
  .string()
  .max(MAX_NAME_LENGTH)
  .refine((value) => value.trim() !== '', 'must not be blank');

export const POLICY_DECISIONS = ['allow', 'deny', 'non_identity', 'bypass'] as const;

const sessionDurationSchema = z.string().refine((value) => {
  const ms = parseGoDuration(value);
  return ms !== null && ms <= MAX_SESSION_DURATION_MS;
}, 'expected a Go duration such as 24h or 2h45m (units ns, us, µs, ms, s, m, h), at most 730h');

/** Policy features Gatehouse does not enforce: accepting them switched on would let users in unchecked. */
const notEnforced = (feature: string) => `${feature} is not supported by Gatehouse; it would not be enforced`;

function refusedWhenTrue(feature: string) {
  return z
    .boolean()
    .refine((on) => !on, notEnforced(feature))
    .optional();
}

/** Cloudflare's own MFA prompt, asked for when authenticators are listed and MFA is not disabled. */
const mfaConfigSchema = z
  .looseObject({
    allowed_authenticators: z.array(z.string()).optional(),
    mfa_disabled: z.boolean().optional(),
  })
  .refine(
    (config) => config.mfa_disabled === true || (config.allowed_authenticators ?? []).length === 0,
    `${notEnforced('independent MFA (mfa_config)')}; require an MFA login with the auth_method selector instead`,
  )
  .nullable()
  .optional();

const ruleBodyShape = {
  include: ruleListSchema.min(1, 'at least one include rule is required'),
  exclude: ruleListSchema.default([]),
  require: ruleListSchema.default([]),
};

const policyShape = {
  name: nameSchema,
  decision: z.enum(POLICY_DECISIONS),
  ...ruleBodyShape,
  session_duration: sessionDurationSchema.nullable().optional(),
  approval_required: refusedWhenTrue('temporary authentication (approval_required)'),
  purpose_justification_required: refusedWhenTrue('purpose justification (purpose_justification_required)'),
  isolation_required: refusedWhenTrue('browser isolation (isolation_required)'),
  mfa_config: mfaConfigSchema,
};

function addProblems(ctx: z.RefinementCtx, problems: readonly PolicyProblem[]): void {
  for (const problem of problems) {
    ctx.addIssue({ code: 'custom', path: problem.path.split('/').slice(1), message: problem.message });
  }
}

function checkPolicy(policy: z.output<z.ZodObject<typeof policyShape>>, ctx: z.RefinementCtx): void {
  addProblems(ctx, [...bodyProblems(policy), ...decisionProblems(policy)]);
}

/**
 * A policy as sent to `POST /access/policies` or inline in an app's `policies`. Unknown and
 * read-only fields (id, created_at, reusable…) are stripped. Checks that need groups, lists, apps
 * or the app's other policies are the *Problems functions exported beside it.
 */
export const policyInputSchema = z
  .object({
    ...policyShape,
    precedence: z.int().min(0).max(MAX_PRECEDENCE).optional(),
  })
  .superRefine(checkPolicy);
export type PolicyInput = z.output<typeof policyInputSchema>;

/** A stored policy as compilePolicies takes it: with its id and its precedence in the app. */
export const policyDefinitionSchema = z
  .object({
    id: text(MAX_VALUE_LENGTH),
    ...policyShape,
    precedence: z.int().min(0).max(MAX_PRECEDENCE),
  })
  .superRefine(checkPolicy);

const groupShape = { name: nameSchema, ...ruleBodyShape };

function checkGroup(group: z.output<z.ZodObject<typeof groupShape>>, ctx: z.RefinementCtx): void {
  addProblems(ctx, bodyProblems(group));
}

/** An Access group as sent to `POST /access/groups` (is_default and read-only fields stripped). */
export const groupInputSchema = z.object(groupShape).superRefine(checkGroup);
export type GroupInput = z.output<typeof groupInputSchema>;

/** A stored group as compilePolicies takes it. */
export const groupDefinitionSchema = z
  .object({ id: text(MAX_VALUE_LENGTH), ...groupShape })
  .superRefine(checkGroup);

const LIST_ITEM_CHECKS = {
  EMAIL: { valid: isEmailAddress, expected: 'an email address' },
  IP: {
    valid: (item: string) => parseCidr(item) !== null,
    expected: 'an IPv4 or IPv6 address or CIDR block',
  },
} as const;

/** An email or IP list, items as plain strings. */
export const listDefinitionSchema = z
  .object({
    id: text(MAX_VALUE_LENGTH),
    name: nameSchema.optional(),
    type: z.enum(['EMAIL', 'IP']),
    items: z
      .array(z.string().max(MAX_EMAIL_LENGTH))
      .max(MAX_LIST_ITEMS, `at most ${MAX_LIST_ITEMS} items per list`),
  })
  .superRefine((list, ctx) => {
    const { valid, expected } = LIST_ITEM_CHECKS[list.type];
    list.items.forEach((item, index) => {
      if (!valid(item)) {
        ctx.addIssue({ code: 'custom', path: ['items', index], message: `expected ${expected}` });
      }
    });
  });

/** Turns a zod error into the engine's problem list, paths as JSON pointers under `path`. */
export function problemsFromZod(error: z.ZodError, path = ''): PolicyProblem[] {
  return error.issues.map((issue) => ({
    path: `${path}${issue.path.map((segment) => `/${String(segment)}`).join('')}`,
    message: issue.message,
  }));
}
