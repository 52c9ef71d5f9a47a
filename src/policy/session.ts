// Re-checking a session on every request [spec §3.3 "When rules are checked"]: identity selectors
// are checked when the app token is minted (at login), non-identity selectors on every request.
// The login records in the app token which policy admitted the user (`policy_id` and
// `policy_precedence`, see AdmittedBy); per request only the token's email and the request's facts
// are at hand, so each identity selector is "settled": it keeps the value it had at the login, as
// far as the policy outcome at the login tells it.
// - The admitting policy matched at the login, so its settled identity rules count as satisfied
//   (true in include and require, false in exclude): the policy still matches when the request
//   facts allow it for some identity.
// - Allow and Block policies ahead of it did not match at the login, so their settled identity
//   rules count as unsatisfied (false in include and require, true in exclude): such a policy
//   decides now only when the request facts alone make it match, whoever the user is.
// With the request facts of the login, this gives the login's decision again (no login loop).
// Email rules (email, email_domain, email_list) are not settled when the token carries the email:
// the fact is known, so they are checked exactly, which keeps a policy mixing "email is X" and
// "IP in range" in one include honest.
import { type CompiledBody, type Matcher, matchBody } from './body.ts';
import type { CompiledApp } from './compile.ts';
import { Facts } from './facts.ts';
import { SELECTOR_KINDS } from './selectors.ts';
import type { Decision, RequestContext } from './types.ts';

/** The policy the login's evaluation ended on, as recorded in the app token. */
export interface AdmittedBy {
  readonly policyId: string;
  readonly precedence: number;
}

const EMAIL_SELECTORS: ReadonlySet<string> = new Set(['email', 'email_domain', 'email_list']);

function settled(matcher: Matcher, facts: Facts): boolean {
  const { selector } = matcher;
  if (selector === 'group' || SELECTOR_KINDS[selector] !== 'identity') return false;
  return !(EMAIL_SELECTORS.has(selector) && facts.email !== null);
}

/** Whether `matcher` holds, a settled identity rule taking `assumed` (flipped under exclude). */
function holds(matcher: Matcher, facts: Facts, assumed: boolean): boolean {
  if (matcher.group !== undefined) return matchSettled(matcher.group, facts, assumed);
  return settled(matcher, facts) ? assumed : matcher.test(facts);
}

function matchSettled(body: CompiledBody, facts: Facts, assumed: boolean): boolean {
  let included = false;
  for (const matcher of body.include) {
    if (holds(matcher, facts, assumed)) {
      included = true;
      break;
    }
  }
  if (!included) return false;
  for (const matcher of body.require) if (!holds(matcher, facts, assumed)) return false;
  for (const matcher of body.exclude) if (holds(matcher, facts, !assumed)) return false;
  return true;
}

/**
 * Where each Allow and Block policy stands in the app's identity phase, by id: built once per
 * compiled app (the proxy does it when it converts a snapshot), so a request finds the policy
 * that admitted its session with one lookup instead of a scan.
 */
export type SessionIndex = ReadonlyMap<string, number>;

export function indexSessions(app: CompiledApp): SessionIndex {
  const index = new Map<string, number>();
  app.phases.identity.forEach((policy, position) => {
    if (!index.has(policy.info.id)) index.set(policy.info.id, position);
  });
  return index;
}

/**
 * The decision for a request carrying an app token that `admitted` let in. Runs the Bypass and
 * Service Auth phase with the request facts, then the Allow and Block policies up to the admitting
 * one as described above. Null when the token no longer proves enough and a fresh login must
 * decide: the admitting policy is gone, is no longer an Allow, moved (another precedence), or the
 * request facts no longer let it match.
 */
export function evaluateSession(
  app: CompiledApp,
  context: RequestContext,
  admitted: AdmittedBy,
  index: SessionIndex = indexSessions(app),
): Decision | null {
  // One Facts for both phases: each derived fact is computed once per request.
  const facts = new Facts(context);
  for (const policy of app.phases.non_identity)
    if (matchBody(policy.body, facts, null)) return policy.decided;
  const { identity } = app.phases;
  // Without the admitting policy, every Allow and Block still gets its say, as ahead of it.
  const position = index.get(admitted.policyId);
  const end = position ?? identity.length;
  for (let i = 0; i < end; i++) {
    if (matchSettled(identity[i]!.body, facts, false)) return identity[i]!.decided;
  }
  if (position === undefined) return null;
  const policy = identity[position]!;
  if (policy.info.precedence !== admitted.precedence || policy.info.decision !== 'allow') return null;
  return matchSettled(policy.body, facts, true) ? policy.decided : null;
}
