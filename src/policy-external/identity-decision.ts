// Identity-time decisions: when a login mints an app token, and when a live organisation session
// re-mints one. Cloudflare checks identity selectors then [spec §3.3 "When rules are checked"],
// `external_evaluation` among them, so this is where its endpoints are called: the verdicts the
// app's policies need are fetched (cached briefly per user, src/policy-external/
// external-evaluation.ts) and handed to the pure engine. Per request the proxy re-uses the
// login's outcome for identity rules (src/policy/session.ts) and calls no endpoint.

import { mintJwt } from '../keys/jwt.ts';
import type { KeyRing } from '../keys/keyring.ts';
import {
  type CompiledApp,
  type Decision,
  evaluate,
  type Identity,
  type RequestContext,
} from '../policy/index.ts';
import {
  createExternalEvaluator,
  type ExternalEvaluator,
  type ExternalEvaluatorOptions,
} from './external-evaluation.ts';

/** The request facts of an identity-time decision; `now` is read after the verdicts arrive. */
export type IdentityContext = Omit<RequestContext, 'now' | 'externalEvaluations'> & { identity: Identity };

export type IdentityDecider = (compiled: CompiledApp, context: IdentityContext) => Promise<Decision>;

/**
 * Request tokens are signed with the account's key and issued by the team domain, so endpoints
 * verify them against `<team domain>/cdn-cgi/access/certs`, as they verify Cloudflare Access.
 */
export function accountSignedEvaluator(
  keys: KeyRing,
  issuer: string,
  options: Omit<ExternalEvaluatorOptions, 'sign'> = {},
): ExternalEvaluator {
  return createExternalEvaluator({
    ...options,
    sign: (claims) => mintJwt(keys, claims, { issuer, expiresAt: claims.exp }),
  });
}

/**
 * Decides with a trace (the access-request log keeps its compact form). An app without
 * `external_evaluation` rules calls nothing; one with them waits for every endpoint it names,
 * each bounded by the evaluator's timeout, and a failed exchange never matches (fail closed).
 */
export function identityDecider(evaluator: ExternalEvaluator, now: () => number = Date.now): IdentityDecider {
  return async (compiled, context) => {
    const targets = compiled.externalEvaluations;
    const externalEvaluations =
      targets.length > 0 ? await evaluator.evaluateAll(targets, context.identity) : undefined;
    return evaluate(
      compiled,
      { ...context, now: now(), ...(externalEvaluations && { externalEvaluations }) },
      { trace: true },
    );
  };
}
