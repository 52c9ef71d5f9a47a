// Gatehouse's policy engine: pure (no I/O, no clock), Cloudflare Access semantics.
// Compile an app's policies once with compilePolicies, evaluate each request with evaluate or
// evaluatePhase. Validation for the management API lives in ./schema.ts (re-exported here).
export { type AuditStep, type AuditTrace, auditTrace, MAX_AUDIT_STEPS } from './audit-trace.ts';
export type { CompiledApp, CompileOptions, ExternalEvaluationTarget } from './compile.ts';
export { compilePolicies } from './compile.ts';
export { parseGoDuration } from './duration.ts';
export { evaluate, evaluatePhase } from './evaluate.ts';
export * as limits from './limits.ts';
export type { PolicyProblem } from './problems.ts';
export { PolicyCompileError } from './problems.ts';
export type { GroupInput, PolicyInput, SelectorValue } from './schema.ts';
export {
  attachmentProblems,
  bodyProblems,
  decisionProblems,
  groupDefinitionSchema,
  groupGraphProblems,
  groupInputSchema,
  linkedAppProblems,
  listDefinitionSchema,
  POLICY_DECISIONS,
  policyDefinitionSchema,
  policyInputSchema,
  precedenceProblems,
  problemsFromZod,
  referenceProblems,
  ruleListSchema,
  ruleSchema,
} from './schema.ts';
export { SELECTOR_KINDS, type SelectorKind, UNSUPPORTED_SELECTORS } from './selectors.ts';
export { type AdmittedBy, evaluateSession, indexSessions, type SessionIndex } from './session.ts';
export type * from './types.ts';
