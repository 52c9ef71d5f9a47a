// Evaluating an app's compiled policies against one request, in Cloudflare's order [spec §3.3,
// D: access-controls/policies/index.mdx]: Bypass and Service Auth policies first by precedence,
// then Allow and Block by precedence; the first match decides; nothing matched means deny.
import { emptyBodyTrace, matchBody } from './body.ts';
import type { CompiledApp, CompiledPolicy } from './compile.ts';
import { Facts } from './facts.ts';
import type {
  BodyTrace,
  Decision,
  EvaluateOptions,
  Phase,
  PhaseResult,
  PolicyInfo,
  PolicyTrace,
  RequestContext,
} from './types.ts';

const DEFAULT_DENY: Decision = Object.freeze({ decision: 'deny', policy: null, trace: null });
const NO_MATCH: PhaseResult = Object.freeze({ decision: 'no_match', policy: null, trace: null });

const EARLIER_DECIDED = 'not evaluated: an earlier policy decided';
const NO_IDENTITY = 'not evaluated: Allow and Block policies need a login and the request has no identity';

function policyTrace(
  { id, name, decision, precedence, phase }: PolicyInfo,
  result: PolicyTrace['result'],
  body: BodyTrace,
  reason?: string,
): PolicyTrace {
  return { policyId: id, name, decision, precedence, phase, result, ...(reason && { reason }), ...body };
}

function skipAll(policies: readonly CompiledPolicy[], reason: string, trace: PolicyTrace[] | null): void {
  if (trace === null) return;
  for (const policy of policies) trace.push(policyTrace(policy.info, 'skipped', emptyBodyTrace(), reason));
}

/** The first matching policy of one phase, or null. With `trace`, records every policy of the phase. */
function runPhase(
  policies: readonly CompiledPolicy[],
  facts: Facts,
  trace: PolicyTrace[] | null,
): CompiledPolicy | null {
  let winner: CompiledPolicy | null = null;
  for (const policy of policies) {
    if (trace === null) {
      if (matchBody(policy.body, facts, null)) return policy;
    } else if (winner !== null) {
      trace.push(policyTrace(policy.info, 'skipped', emptyBodyTrace(), EARLIER_DECIDED));
    } else {
      const body = emptyBodyTrace();
      const matched = matchBody(policy.body, facts, body);
      trace.push(policyTrace(policy.info, matched ? 'matched' : 'not_matched', body));
      if (matched) winner = policy;
    }
  }
  return winner;
}

/** Allow and Block need a login [spec §3.3]; without an identity they are skipped, not failed. */
function runIdentityPhase(
  app: CompiledApp,
  facts: Facts,
  trace: PolicyTrace[] | null,
): CompiledPolicy | null {
  if (facts.identity !== undefined) return runPhase(app.phases.identity, facts, trace);
  skipAll(app.phases.identity, NO_IDENTITY, trace);
  return null;
}

function traced(winner: CompiledPolicy, trace: readonly PolicyTrace[]): Decision {
  return { decision: winner.info.decision, policy: winner.info, trace };
}

/**
 * The app's decision for this request. `policy` is null for the default deny, which the proxy
 * answers with a login redirect or 401 rather than the block page an explicit Block policy gets.
 * Without `identity`, only Bypass and Service Auth policies can match.
 */
export function evaluate(app: CompiledApp, context: RequestContext, options: EvaluateOptions = {}): Decision {
  const trace: PolicyTrace[] | null = options.trace === true ? [] : null;
  const facts = new Facts(context);
  const winner = runPhase(app.phases.non_identity, facts, trace);
  if (winner !== null) skipAll(app.phases.identity, EARLIER_DECIDED, trace);
  const decided = winner ?? runIdentityPhase(app, facts, trace);
  if (decided === null) return trace === null ? DEFAULT_DENY : { ...DEFAULT_DENY, trace };
  return trace === null ? decided.decided : traced(decided, trace);
}

/**
 * One phase alone. `non_identity` (Bypass, Service Auth) needs no login and is cheap enough to run
 * on every request before deciding whether to send the user to log in; `identity` (Allow, Block)
 * runs with the session's identity. `no_match` means: go on to the next phase, or deny.
 */
export function evaluatePhase(
  app: CompiledApp,
  phase: Phase,
  context: RequestContext,
  options: EvaluateOptions = {},
): PhaseResult {
  const trace: PolicyTrace[] | null = options.trace === true ? [] : null;
  const facts = new Facts(context);
  const winner =
    phase === 'identity' ? runIdentityPhase(app, facts, trace) : runPhase(app.phases[phase], facts, trace);
  if (winner === null) return trace === null ? NO_MATCH : { ...NO_MATCH, trace };
  return trace === null ? winner.decided : traced(winner, trace);
}
