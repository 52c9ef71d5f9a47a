// "Would this user get in?": evaluates one app's policies for an identity and request facts,
// with the policy engine's explanation trace. It backs GET /access/apps/{app_id}/user_policy_checks
// (spec §1.3) and the `gatehouse policy test` command, so both answer from the same code.
//
// It reads the store, not the proxy's snapshot, so a check right after a write sees the write.
// The identity starts from the user's newest login session (what the IdP really said: IdP, AMR,
// OIDC claims, GitHub organisations), and every fact given explicitly replaces that part of it.
// External evaluation endpoints are not called: their rules fail closed, and the trace says so.
import type { Repositories } from '../gateway.ts';
import { type LoginSession, LoginState } from '../identity/state.ts';
import type { LoginIdentity } from '../identity/types.ts';
import {
  type CompiledApp,
  compilePolicies,
  type Decision,
  evaluate,
  type Identity,
  type PolicyTrace,
  type RequestContext,
} from '../policy/index.ts';
import { loadAccessConfig, toPolicyDefinition } from '../store/access-config.ts';
import type { StoredApp } from '../store/repositories/apps.ts';
import type { StoredUser } from '../store/repositories/users.ts';
import type { Store } from '../store/store.ts';

/** What the caller knows about the user and the request; everything but `now` is optional. */
export interface PolicyCheckFacts {
  email?: string;
  userId?: string;
  /** Id of the identity provider the user logged in with; its type is read from the store. */
  idpId?: string;
  /** IdP groups: the OIDC `groups` claim, which `oidc` rules with claim_name "groups" read. */
  groups?: string[];
  /** RFC 8176 authentication methods, read by `auth_method` rules. */
  amr?: string[];
  /** Further OIDC claims (name → value), read by `oidc` rules. */
  claims?: Record<string, string>;
  /** GitHub organisations with their teams, read by `github-organization` rules. */
  githubOrgs?: { name: string; teams: string[] }[];
  ip?: string;
  country?: string;
  /** Common name of a verified client certificate (implies one was presented). */
  commonName?: string;
  /** A verified client certificate was presented. */
  certificate?: boolean;
  /** Id or client_id of a service token the request would carry. */
  serviceToken?: string;
  /** Uid of the app a verified linked token was issued for. */
  linkedAppUid?: string;
  now: Date;
}

export interface PolicyCheckResult {
  app: StoredApp;
  user: StoredUser | null;
  /** The newest login session of the user, whose identity the check started from. */
  session: LoginSession | null;
  context: RequestContext;
  decision: Decision;
  /** Set when the app's stored policies do not compile; the decision is then deny. */
  compileError: string | null;
}

/** A fact that names nothing, or facts that contradict each other. */
export class PolicyCheckError extends Error {}

interface CheckDeps {
  store: Store;
  repos: Repositories;
  accountId: string;
}

/**
 * The app named by `ref`: its id, its domain or one of its destinations (host[/path], host
 * case-insensitive), or its name (case-insensitive). An ambiguous name is an error.
 */
export async function findApp(repos: Repositories, accountId: string, ref: string): Promise<StoredApp> {
  const apps = await repos.apps.listAll(accountId);
  const lower = ref.toLowerCase();
  const byId = apps.find((app) => app.id === lower);
  if (byId) return byId;
  const byDomain = apps.find(
    (app) =>
      app.type === 'self_hosted' &&
      (app.domain.toLowerCase() === lower ||
        app.config.destinations.some((destination) => destination.toLowerCase() === lower)),
  );
  if (byDomain) return byDomain;
  const byName = apps.filter((app) => app.name.toLowerCase() === lower);
  if (byName.length === 1) return byName[0]!;
  if (byName.length > 1) {
    throw new PolicyCheckError(
      `${byName.length} applications are named ${JSON.stringify(ref)}; name one by id: ${byName.map((app) => app.id).join(', ')}`,
    );
  }
  throw new PolicyCheckError(`no application has the id, domain or name ${JSON.stringify(ref)}`);
}

async function findUser(deps: CheckDeps, facts: PolicyCheckFacts): Promise<StoredUser | null> {
  const { repos, accountId } = deps;
  if (facts.userId !== undefined) {
    const user = await repos.users.get(accountId, facts.userId.toLowerCase());
    if (!user) throw new PolicyCheckError(`user ${facts.userId} does not exist`);
    if (facts.email !== undefined && facts.email.toLowerCase() !== user.email) {
      throw new PolicyCheckError(`user ${user.id} has the email ${user.email}, not ${facts.email}`);
    }
    return user;
  }
  return facts.email === undefined ? null : repos.users.findByEmail(accountId, facts.email);
}

/** The session's identity with every explicitly given fact put in its place. */
async function buildIdentity(
  deps: CheckDeps,
  facts: PolicyCheckFacts,
  user: StoredUser | null,
  session: LoginSession | null,
): Promise<Identity | undefined> {
  const base: Partial<LoginIdentity> = session?.identity ?? {};
  const email = user?.email ?? facts.email;
  if (email === undefined) return undefined;
  let idp = base.idp;
  if (facts.idpId !== undefined) {
    const provider = await deps.repos.identityProviders.get(deps.accountId, facts.idpId.toLowerCase());
    if (!provider) throw new PolicyCheckError(`identity provider ${facts.idpId} does not exist`);
    idp = { id: provider.id, type: provider.type };
  }
  const claims = {
    ...base.oidcClaims,
    ...facts.claims,
    ...(facts.groups !== undefined && { groups: facts.groups }),
  };
  const github = facts.githubOrgs !== undefined ? { orgs: facts.githubOrgs } : base.github;
  const amr = facts.amr ?? base.amr;
  return {
    email,
    ...(user !== null && { userUid: user.id }),
    ...(base.name !== undefined && { name: base.name }),
    ...(idp !== undefined && { idp }),
    ...(amr !== undefined && { amr }),
    ...(Object.keys(claims).length > 0 && { oidcClaims: claims }),
    ...(github !== undefined && { github }),
  } as Identity;
}

async function serviceTokenId(deps: CheckDeps, ref: string): Promise<string> {
  const lower = ref.toLowerCase();
  const tokens = await deps.repos.serviceTokens.listAll(deps.accountId);
  const token = tokens.find((candidate) => candidate.id === lower || candidate.clientId === lower);
  if (!token) throw new PolicyCheckError(`no service token has the id or client_id ${JSON.stringify(ref)}`);
  return token.id;
}

/** Evaluates `app`'s policies, as stored now, for the user and request the facts describe. */
export async function checkPolicies(
  deps: CheckDeps,
  app: StoredApp,
  facts: PolicyCheckFacts,
): Promise<PolicyCheckResult> {
  const { store, repos, accountId } = deps;
  const user = await findUser(deps, facts);
  const session = user === null ? null : await new LoginState(store, accountId).lastSession(user.id);
  const identity = await buildIdentity(deps, facts, user, session);
  const linkedAppUid = facts.linkedAppUid?.toLowerCase();
  if (linkedAppUid !== undefined && !(await repos.apps.get(accountId, linkedAppUid))) {
    throw new PolicyCheckError(`linked app ${facts.linkedAppUid} does not exist`);
  }
  const context: RequestContext = {
    now: facts.now,
    ...(identity !== undefined && { identity }),
    ...(facts.ip !== undefined && { clientIp: facts.ip }),
    ...(facts.country !== undefined && { country: facts.country }),
    ...((facts.certificate === true || facts.commonName !== undefined) && {
      mtls: { present: true, ...(facts.commonName !== undefined && { commonName: facts.commonName }) },
    }),
    ...(facts.serviceToken !== undefined && {
      serviceTokenId: await serviceTokenId(deps, facts.serviceToken),
    }),
    ...(linkedAppUid !== undefined && { linkedAppUid }),
  };
  const config = await store.db.transaction().execute((tx) => loadAccessConfig(repos, accountId, tx));
  const policies = config.appPolicies.get(app.id) ?? [];
  let compiled: CompiledApp;
  try {
    compiled = compilePolicies(policies.map(toPolicyDefinition), {
      groups: config.groups.values(),
      lists: config.lists.values(),
    });
  } catch (error) {
    // Only a database edited by hand gets here (the API refuses such writes); the proxy denies.
    const decision: Decision = { decision: 'deny', policy: null, trace: [] };
    return { app, user, session, context, decision, compileError: (error as Error).message };
  }
  const decision = evaluate(compiled, context, { trace: true });
  return { app, user, session, context, decision, compileError: null };
}

/** Whether the decision lets the request through: Allow, Bypass or Service Auth matched. */
export function grantsAccess(decision: Decision): boolean {
  return decision.decision !== 'deny';
}

/** The trace in the API's snake_case shape: each policy with its id, then how each rule fared. */
export function traceJson(trace: readonly PolicyTrace[]) {
  return trace.map(({ policyId, ...rest }) => ({ id: policyId, ...rest }));
}

/** The deciding policy, or null for the default deny. */
export function decidedByJson(decision: Decision) {
  const { policy } = decision;
  return policy === null
    ? null
    : { id: policy.id, name: policy.name, decision: policy.decision, precedence: policy.precedence };
}
