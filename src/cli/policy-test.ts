// `gatehouse policy test`: evaluates an app's policies, as stored now, for a user and request
// facts, and prints the decision, the deciding policy and the engine's explanation trace
// (issue: policy engine, "Explanation"). Human-readable by default, the raw result with --json.
// Exit codes: 0 access granted (Allow, Bypass or Service Auth matched), 3 denied (a Block policy
// or the default deny), 2 bad usage or a fact that names nothing, 1 runtime failure.
import type { Command } from 'commander';
import {
  checkPolicies,
  decidedByJson,
  findApp,
  grantsAccess,
  PolicyCheckError,
  type PolicyCheckFacts,
  type PolicyCheckResult,
  traceJson,
} from '../api/policy-check.ts';
import type { Settings } from '../config/settings.ts';
import { openStore } from '../gateway.ts';
import type { BodyTrace, PolicyTrace, RuleTrace } from '../policy/index.ts';
import { parseIp } from '../policy/ip.ts';

export const EXIT_DENIED = 3;

interface PolicyTestOptions {
  app: string;
  email?: string;
  userId?: string;
  idp?: string;
  groups?: string;
  amr?: string;
  claim?: string[];
  githubOrg?: string[];
  ip?: string;
  country?: string;
  certificate?: boolean;
  commonName?: string;
  serviceToken?: string;
  linkedApp?: string;
  now?: string;
  json?: boolean;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const repeat = (value: string, previous: string[] = []) => [...previous, value];
const commaList = (value: string) =>
  value
    .split(',')
    .map((entry) => entry.trim())
    .filter((entry) => entry !== '');

function usage(message: string): never {
  throw new PolicyCheckError(message);
}

/** Command-line options → the facts the check takes; malformed values are usage errors. */
function factsFrom(options: PolicyTestOptions): PolicyCheckFacts {
  const now = options.now === undefined ? new Date() : new Date(options.now);
  if (Number.isNaN(now.getTime())) usage(`--now: ${JSON.stringify(options.now)} is not a date and time`);
  const claims: Record<string, string> = {};
  for (const claim of options.claim ?? []) {
    const eq = claim.indexOf('=');
    if (eq <= 0) usage(`--claim: expected name=value, got ${JSON.stringify(claim)}`);
    claims[claim.slice(0, eq)] = claim.slice(eq + 1);
  }
  const orgs = new Map<string, string[]>();
  for (const entry of options.githubOrg ?? []) {
    const [org, team, extra] = entry.split('/');
    if (!org || extra !== undefined)
      usage(`--github-org: expected org or org/team, got ${JSON.stringify(entry)}`);
    const teams = orgs.get(org) ?? [];
    if (team) teams.push(team);
    orgs.set(org, teams);
  }
  for (const [flag, value] of [
    ['--user-id', options.userId],
    ['--idp', options.idp],
    ['--linked-app', options.linkedApp],
  ] as const) {
    if (value !== undefined && !UUID.test(value))
      usage(`${flag}: expected a UUID, got ${JSON.stringify(value)}`);
  }
  if (options.ip !== undefined && parseIp(options.ip) === null) {
    usage(`--ip: expected an IPv4 or IPv6 address, got ${JSON.stringify(options.ip)}`);
  }
  if (options.country !== undefined && !/^[A-Za-z]{2}$/.test(options.country)) {
    usage(
      `--country: expected an ISO 3166-1 alpha-2 code such as US, got ${JSON.stringify(options.country)}`,
    );
  }
  return {
    now,
    ...(options.email !== undefined && { email: options.email }),
    ...(options.userId !== undefined && { userId: options.userId }),
    ...(options.idp !== undefined && { idpId: options.idp }),
    ...(options.groups !== undefined && { groups: commaList(options.groups) }),
    ...(options.amr !== undefined && { amr: commaList(options.amr) }),
    ...(options.claim !== undefined && { claims }),
    ...(orgs.size > 0 && { githubOrgs: [...orgs].map(([name, teams]) => ({ name, teams })) }),
    ...(options.ip !== undefined && { ip: options.ip }),
    ...(options.country !== undefined && { country: options.country }),
    ...(options.certificate === true && { certificate: true }),
    ...(options.commonName !== undefined && { commonName: options.commonName }),
    ...(options.serviceToken !== undefined && { serviceToken: options.serviceToken }),
    ...(options.linkedApp !== undefined && { linkedAppUid: options.linkedApp }),
  };
}

const LABELS = { allow: 'Allow', deny: 'Block', non_identity: 'Service Auth', bypass: 'Bypass' } as const;

function ruleLines(rules: readonly RuleTrace[], section: string, indent: string): string[] {
  const lines: string[] = [];
  for (const rule of rules) {
    lines.push(`${indent}${section} ${rule.matched ? 'yes' : 'no '} ${rule.rule}: ${rule.reason}`);
    if (rule.group) lines.push(...bodyLines(rule.group, `${indent}    `));
  }
  return lines;
}

function bodyLines(body: BodyTrace, indent: string): string[] {
  return [
    ...ruleLines(body.include, 'include', indent),
    ...ruleLines(body.require, 'require', indent),
    ...ruleLines(body.exclude, 'exclude', indent),
  ];
}

function policyLines(entry: PolicyTrace, index: number): string[] {
  const head = `${index + 1}. ${LABELS[entry.decision]} "${entry.name}" (precedence ${entry.precedence}, ${entry.policyId}): ${entry.result.replace('_', ' ')}`;
  return [`  ${head}${entry.reason ? ` (${entry.reason})` : ''}`, ...bodyLines(entry, '       ')];
}

/** The human-readable report: what was checked, the decision and why, policy by policy. */
export function formatReport(result: PolicyCheckResult): string {
  const { app, decision, context, user } = result;
  const identity = context.identity;
  const who = identity
    ? [
        identity.email,
        user ? `user ${user.id}` : 'no such user has logged in yet',
        identity.idp && `IdP ${identity.idp.type} ${identity.idp.id}`,
        identity.amr && `amr [${identity.amr.join(', ')}]`,
        identity.oidcClaims && `claims ${JSON.stringify(identity.oidcClaims)}`,
      ]
        .filter(Boolean)
        .join(', ')
    : 'none (a request without a login)';
  const request = [
    context.clientIp && `ip ${context.clientIp}`,
    context.country && `country ${context.country.toUpperCase()}`,
    context.mtls && `client certificate${context.mtls.commonName ? ` CN=${context.mtls.commonName}` : ''}`,
    context.serviceTokenId && `service token ${context.serviceTokenId}`,
    context.linkedAppUid && `linked app token for ${context.linkedAppUid}`,
  ].filter(Boolean);
  const host = app.type === 'self_hosted' ? ` ${app.domain}` : '';
  const verdict = decision.policy
    ? `${grantsAccess(decision) ? 'ALLOWED' : 'DENIED'} by ${LABELS[decision.policy.decision]} policy "${decision.policy.name}" (precedence ${decision.policy.precedence}, ${decision.policy.id})`
    : 'DENIED: no policy matched (Access denies by default)';
  const trace = decision.trace ?? [];
  return [
    `app:      "${app.name}" (${app.type}, ${app.id})${host}`,
    `identity: ${who}`,
    `request:  ${request.length > 0 ? request.join(', ') : 'no further facts'}`,
    `decision: ${verdict}`,
    ...(result.compileError ? [`error:    the app's policies do not compile: ${result.compileError}`] : []),
    trace.length > 0 ? 'policies in evaluation order:' : 'the app has no policies',
    ...trace.flatMap(policyLines),
    '',
  ].join('\n');
}

/** The --json document: the decision, the deciding policy and the raw trace. */
export function jsonReport(result: PolicyCheckResult) {
  const { app, decision, context } = result;
  return {
    app: {
      id: app.id,
      name: app.name,
      type: app.type,
      ...(app.type === 'self_hosted' && { domain: app.domain }),
    },
    user_id: result.user?.id ?? null,
    context: { ...context, now: new Date(context.now).toISOString() },
    decision: decision.decision,
    allowed: grantsAccess(decision),
    policy: decidedByJson(decision),
    trace: traceJson(decision.trace ?? []),
    ...(result.compileError !== null && { error: result.compileError }),
  };
}

/**
 * Adds `policy test` to the program. `withSettings` adds the shared settings flags and
 * `settingsFrom` reads them, as for every other command (src/cli/main.ts).
 */
export function addPolicyCommands(
  program: Command,
  withSettings: (command: Command) => Command,
  settingsFrom: (command: Command) => Settings,
): void {
  const policy = program.command('policy').description('Access policies');
  withSettings(
    policy
      .command('test')
      .description(
        `evaluate an app's policies for a user and request; prints the decision and why. Exit 0: access granted, ${EXIT_DENIED}: denied`,
      )
      .requiredOption('--app <id|domain|name>', 'the application')
      .option('--email <email>', 'the user (their newest login session supplies IdP, groups, claims)')
      .option('--user-id <uuid>', 'the user by id instead of email')
      .option('--idp <id>', 'identity provider id the user logged in with')
      .option('--groups <a,b>', 'IdP groups (the OIDC "groups" claim)')
      .option('--amr <a,b>', 'authentication methods (RFC 8176), e.g. pwd,mfa')
      .option('--claim <name=value>', 'an OIDC claim, repeatable', repeat)
      .option('--github-org <org[/team]>', 'GitHub organisation (and team), repeatable', repeat)
      .option('--ip <address>', 'client IP address (IPv4 or IPv6)')
      .option('--country <code>', 'client country, ISO 3166-1 alpha-2')
      .option('--certificate', 'a valid client certificate was presented')
      .option('--common-name <cn>', 'common name of the client certificate')
      .option('--service-token <id|client_id>', 'a service token the request carries')
      .option('--linked-app <uid>', 'app uid of a linked app token the request carries')
      .option('--now <time>', 'evaluate at this ISO 8601 time instead of now')
      .option('--json', 'print the raw result and trace as JSON'),
  ).action(async (options: PolicyTestOptions, command: Command) => {
    const { store, repos, account } = await openStore(settingsFrom(command));
    try {
      const facts = factsFrom(options);
      const deps = { store, repos, accountId: account.accountId };
      const result = await checkPolicies(deps, await findApp(repos, account.accountId, options.app), facts);
      process.stdout.write(
        options.json ? `${JSON.stringify(jsonReport(result), null, 2)}\n` : formatReport(result),
      );
      process.exitCode = grantsAccess(result.decision) ? 0 : EXIT_DENIED;
    } catch (error) {
      if (!(error instanceof PolicyCheckError)) throw error;
      process.stderr.write(`gatehouse: error: ${error.message}\n`);
      process.exitCode = 2;
    } finally {
      await store.close();
    }
  });
}
