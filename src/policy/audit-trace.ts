// The explanation in the form the access-request log keeps (issue 3 "Explanation … feeds the
// audit log"): for each policy that was evaluated, its outcome and the one rule that settled it,
// instead of the full per-rule trace. Bounded, so a row stays small whatever the app holds.
import type { Decision, PolicyDecision, PolicyTrace, RuleTrace } from './types.ts';

/** One evaluated policy: `rule` is the section and index of the rule that settled it, e.g. `require[1]`. */
export interface AuditStep {
  readonly policy_id: string;
  readonly name: string;
  readonly decision: PolicyDecision;
  readonly matched: boolean;
  readonly rule: string | null;
  readonly reason: string;
}

export interface AuditTrace {
  /** The final decision; `deny` with `policy_id: null` is the default deny. */
  readonly decision: PolicyDecision;
  readonly policy_id: string | null;
  /** Evaluated policies in evaluation order; the last is the one that decided, when one did. */
  readonly steps: readonly AuditStep[];
  /** Evaluated policies left out at the front to respect MAX_AUDIT_STEPS. */
  readonly omitted: number;
}

/** Steps kept per row: the deciding policy is last, so the newest steps are the ones kept. */
export const MAX_AUDIT_STEPS = 10;
/** Characters kept of a policy name or a reason. */
export const MAX_AUDIT_TEXT = 200;

function clip(text: string): string {
  return text.length <= MAX_AUDIT_TEXT ? text : `${text.slice(0, MAX_AUDIT_TEXT - 1)}…`;
}

function firstWith(rules: readonly RuleTrace[], matched: boolean): number {
  return rules.findIndex((rule) => rule.matched === matched);
}

/**
 * The rule that settled a policy: for a match, the include rule that matched; otherwise the
 * first reason it failed — no include matched, a require failed, or an exclude matched.
 */
function settlingRule(policy: PolicyTrace): { rule: string | null; reason: string } {
  const at = (section: 'include' | 'require' | 'exclude', index: number) => ({
    rule: `${section}[${index}]`,
    reason: `${policy[section][index]!.rule}: ${policy[section][index]!.reason}`,
  });
  const included = firstWith(policy.include, true);
  if (policy.result === 'matched') return at('include', included);
  if (included === -1) {
    // The first include rule's reason says what was missing (often the only include rule).
    const first = policy.include[0];
    const why = first ? `; include[0] ${first.rule}: ${first.reason}` : '';
    return { rule: 'include', reason: `no include rule matched${why}` };
  }
  const failed = firstWith(policy.require, false);
  if (failed !== -1) return at('require', failed);
  const excluded = firstWith(policy.exclude, true);
  if (excluded !== -1) return at('exclude', excluded);
  return { rule: null, reason: 'not matched' };
}

/** The compact form of a traced decision (`evaluate(…, { trace: true })`); null without a trace. */
export function auditTrace(decision: Decision): AuditTrace | null {
  if (decision.trace === null) return null;
  const evaluated = decision.trace.filter((policy) => policy.result !== 'skipped');
  const kept = evaluated.slice(-MAX_AUDIT_STEPS);
  return {
    decision: decision.decision,
    policy_id: decision.policy?.id ?? null,
    steps: kept.map((policy) => {
      const { rule, reason } = settlingRule(policy);
      return {
        policy_id: policy.policyId,
        name: clip(policy.name),
        decision: policy.decision,
        matched: policy.result === 'matched',
        rule,
        reason: clip(reason),
      };
    }),
    omitted: evaluated.length - kept.length,
  };
}
