// The management API's side of policy validation. Shapes and rule semantics are the policy
// engine's (src/policy: policyInputSchema, groupInputSchema, compilePolicies and the
// cross-object *Problems checks); this module screens Cloudflare's extra policy fields, turns
// engine problems into API errors, and checks the account's whole Access configuration inside a
// write's transaction, so no write can leave an app whose policies do not compile.
import type { Kysely } from 'kysely';
import type { Settings } from '../config/settings.ts';
import { type CountrySettings, countryConfigured } from '../geo/country.ts';
import {
  attachmentProblems,
  bodyProblems,
  compilePolicies,
  decisionProblems,
  groupGraphProblems,
  groupInputSchema,
  linkedAppProblems,
  PolicyCompileError,
  type PolicyInput,
  type PolicyProblem,
  policyInputSchema,
  referenceProblems,
} from '../policy/index.ts';
import { walkRules } from '../policy/rules.ts';
import type { RuleBody, SelectorName } from '../policy/types.ts';
import { type AccessConfig, loadAccessConfig, toPolicyDefinition } from '../store/access-config.ts';
import type { GroupContent } from '../store/repositories/groups.ts';
import type { PolicyContent } from '../store/repositories/policies.ts';
import type { Database } from '../store/schema.ts';
import { verifiesClientCertificates } from '../tls/listener.ts';
import { invalidRequest, parseInput } from './errors.ts';
import { asksForMfa, type FieldScreen, isSet, screenFields } from './fields.ts';
import type { ApiContext } from './framework.ts';

const POLICY_SCREEN: FieldScreen = {
  accepted: [
    'name',
    'decision',
    'include',
    'exclude',
    'require',
    'session_duration',
    'precedence',
    // The engine refuses these when true.
    'approval_required',
    'purpose_justification_required',
    'isolation_required',
  ],
  readOnly: ['id', 'uid', 'account_id', 'app_count', 'reusable', 'created_at', 'updated_at'],
  unenforced: {
    approval_groups: {
      promises: isSet,
      why: 'temporary authentication (approval groups) would not be enforced',
    },
    mfa_config: { promises: asksForMfa, why: 'per-policy MFA requirements would not be enforced' },
    connection_rules: { promises: isSet, why: 'RDP connection rules apply to infrastructure apps only' },
    purpose_justification_prompt: {
      promises: () => false,
      why: 'only meaningful with purpose_justification_required',
    },
  },
};

/** A policy body (reusable, app-scoped, or inline in an app's `policies`), validated. */
export function parsePolicyBody(body: unknown, prefix = ''): PolicyInput {
  return parseInput(policyInputSchema, screenFields(body, POLICY_SCREEN, prefix), prefix);
}

export function toPolicyContent(input: PolicyInput): PolicyContent {
  return {
    name: input.name,
    decision: input.decision,
    include: input.include,
    exclude: input.exclude,
    require: input.require,
    sessionDuration: input.session_duration ?? null,
  };
}

const GROUP_SCREEN: FieldScreen = {
  accepted: ['name', 'include', 'exclude', 'require', 'is_default'],
  readOnly: ['id', 'uid', 'account_id', 'created_at', 'updated_at'],
  unenforced: {},
};

/** A group body; `is_default` (the dashboard's "default group" mark) is kept beside the rules. */
export function parseGroupBody(body: unknown): GroupContent {
  const { is_default: isDefault, ...rest } = screenFields(body, GROUP_SCREEN);
  if (isDefault !== undefined && typeof isDefault !== 'boolean')
    throw invalidRequest('is_default: expected a boolean');
  const group = parseInput(groupInputSchema, rest);
  return { ...group, isDefault: isDefault === true };
}

const NO_MTLS =
  'the gateway has no TLS client certificate (mTLS) configuration, so no request carries a verified certificate';

const NO_COUNTRY =
  'the gateway has no trusted country source configured (a CF-IPCountry header from a trusted proxy, or a MaxMind database), so the rule could never match';

/**
 * Selectors the engine evaluates but whose facts no request to this gateway carries: without
 * a configured country source (`countryHeader` with `trustedProxies`, or `geoipDatabase`) no request has
 * a country, and without a client CA (settings `tlsClientCa`, src/tls/listener.ts) no request
 * carries a verified client certificate. Such a rule never matches, so in
 * an exclude it would silently exclude nobody; it is refused while its fact is not supplied.
 */
export function unsuppliedFacts(
  settings: CountrySettings & Pick<Settings, 'tlsCert' | 'tlsClientCa'>,
): Partial<Record<SelectorName, string>> {
  return {
    ...(!countryConfigured(settings) && { geo: NO_COUNTRY }),
    ...(!verifiesClientCertificates(settings) && { certificate: NO_MTLS, common_name: NO_MTLS }),
  };
}

/** Rules of the body itself (groups are checked on their own) that name an unsupplied fact. */
function unsuppliedFactProblems(
  body: RuleBody,
  unsupplied: Partial<Record<SelectorName, string>>,
): PolicyProblem[] {
  const problems: PolicyProblem[] = [];
  for (const visit of walkRules(body, '', undefined)) {
    const why = unsupplied[visit.selector];
    if (why) problems.push({ path: visit.path, message: `"${visit.selector}" is not available: ${why}` });
  }
  return problems;
}

/** Every problem in the account's configuration, each naming the object it is in. */
export function accessConfigProblems(
  config: AccessConfig,
  unsupplied: Partial<Record<SelectorName, string>>,
): string[] {
  const messages: string[] = [];
  const report = (where: string, problems: readonly PolicyProblem[]) => {
    for (const problem of problems) messages.push(`${where}${problem.path}: ${problem.message}`);
  };
  const linkable = new Set(config.apps.map((app) => app.id));
  const known = { groups: config.groups, lists: config.lists };
  for (const policy of config.policies.values()) {
    const where = `policy "${policy.name}" (${policy.id})`;
    report(where, [
      ...referenceProblems(policy, known),
      ...linkedAppProblems(policy, linkable, config.groups),
      ...decisionProblems(policy, config.groups),
      ...bodyProblems(policy),
      ...unsuppliedFactProblems(policy, unsupplied),
    ]);
  }
  for (const group of config.groups.values()) {
    report(`group "${group.name}" (${group.id})`, [
      ...referenceProblems(group, known),
      ...unsuppliedFactProblems(group, unsupplied),
    ]);
  }
  report('groups', groupGraphProblems(config.groups));
  const destinationOwner = new Map<string, string>();
  for (const app of config.apps) {
    if (app.type !== 'self_hosted') continue;
    for (const destination of app.config.destinations) {
      const owner = destinationOwner.get(destination);
      // Cloudflare refuses a second app for the same hostname (12109 application_already_exists).
      if (owner !== undefined) messages.push(`destination "${destination}" is already used by app ${owner}`);
      destinationOwner.set(destination, `"${app.name}" (${app.id})`);
    }
  }
  for (const app of config.apps) {
    const where = `app "${app.name}" (${app.id}) policies`;
    const policies = config.appPolicies.get(app.id) ?? [];
    const attachment = attachmentProblems(app.type, policies, config.groups);
    report(where, attachment);
    if (attachment.length > 0) continue;
    try {
      compilePolicies(policies.map(toPolicyDefinition), {
        groups: config.groups.values(),
        lists: config.lists.values(),
      });
    } catch (error) {
      if (!(error instanceof PolicyCompileError)) throw error;
      report(where, error.problems);
    }
  }
  return [...new Set(messages)];
}

/**
 * Loads the configuration as `db` (the write's transaction) sees it and refuses the write with
 * a 400 listing the problems when it is not consistent; throwing rolls the transaction back.
 */
export async function assertAccessConfigValid(
  ctx: Pick<ApiContext, 'gateway' | 'accountId'>,
  db: Kysely<Database>,
): Promise<AccessConfig> {
  const config = await loadAccessConfig(ctx.gateway.repos, ctx.accountId, db);
  const problems = accessConfigProblems(config, unsuppliedFacts(ctx.gateway.settings));
  if (problems.length > 0) {
    const shown = problems.slice(0, 5).join('; ');
    throw invalidRequest(`${shown}${problems.length > 5 ? ` (and ${problems.length - 5} more)` : ''}`);
  }
  return config;
}
