// Shared builders for the policy tests.
import {
  type CompileOptions,
  compilePolicies,
  evaluate,
  type PolicyDecision,
  type PolicyDefinition,
  type RequestContext,
  type Rule,
  SELECTOR_KINDS,
  type SelectorName,
} from '../../src/policy/index.ts';

/** A deterministic UUID for test ids: uuid(1) = 00000000-0000-4000-8000-000000000001. */
export function uuid(n: number): string {
  return `00000000-0000-4000-8000-${n.toString(16).padStart(12, '0')}`;
}

export const IDP_GITHUB = uuid(0xa1);
export const IDP_OIDC = uuid(0xa2);
export const IDP_OTP = uuid(0xa3);
export const APP_MCP = uuid(0xb1);
export const APP_OTHER = uuid(0xb2);
export const TOKEN_CI = uuid(0xc1);
export const TOKEN_OTHER = uuid(0xc2);

export const NOW = Date.UTC(2026, 0, 1);

let nextPolicy = 1;

export function policy(
  decision: PolicyDecision,
  include: Rule[],
  extra: Partial<Omit<PolicyDefinition, 'decision' | 'include'>> = {},
): PolicyDefinition {
  const n = nextPolicy++;
  return { id: `policy-${n}`, name: `Policy ${n}`, decision, include, precedence: n, ...extra };
}

/** Whether a single policy holding `rule` in its include matches the context. */
export function ruleMatches(
  rule: Rule,
  context: Omit<RequestContext, 'now'> & { now?: number },
  options: CompileOptions = {},
): boolean {
  const decision = ruleDecision(rule);
  const app = compilePolicies([policy(decision, [rule], { precedence: 1 })], options);
  return evaluate(app, { now: NOW, ...context }).policy !== null;
}

/**
 * A decision that accepts the rule: Service Auth for request selectors (no login needed), Allow
 * for identity selectors and groups (the context must then carry an identity).
 */
function ruleDecision(rule: Rule): PolicyDecision {
  const selector = Object.keys(rule)[0] as SelectorName;
  return selector !== 'group' && SELECTOR_KINDS[selector] === 'request' ? 'non_identity' : 'allow';
}
