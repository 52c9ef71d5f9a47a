// The I/O half of the `external_evaluation` selector. The pure engine (src/policy) only reads
// verdicts from RequestContext.externalEvaluations; this client fetches them.
//
// Protocol, as Cloudflare Access runs it [D: access-controls/policies/external-evaluation.mdx;
// cloudflare/workers-access-external-auth-example]: POST `{"token": <JWT>}` to evaluate_url, the
// JWT signed with the account key and carrying the user's `identity` and a random `nonce`. The
// endpoint answers `{"token": <JWT>}` signed with a key published at keys_url, whose claims hold
// `success` and the same `nonce`. Anything else — a timeout, an HTTP error, a bad signature, a
// stale or replayed answer — is a failure, and a failure never matches (fail closed).
import { randomBytes } from 'node:crypto';
import { createRemoteJWKSet, type JWTPayload, jwtVerify } from 'jose';
import type { ExternalEvaluationResult, ExternalEvaluationTarget, Identity } from '../policy/index.ts';

/** The claims Gatehouse asks to have signed: what the endpoint reads as `claims.identity`, `claims.nonce`. */
export interface ExternalEvaluationRequestClaims extends JWTPayload {
  readonly aud: string;
  readonly iat: number;
  readonly exp: number;
  readonly nonce: string;
  readonly identity: {
    readonly email?: string;
    readonly user_uuid?: string;
    readonly idp?: { readonly id: string; readonly type: string };
    readonly amr?: readonly string[];
  };
}

export interface ExternalEvaluatorOptions {
  /**
   * Signs the request claims with the account's signing key (RS256 with `kid`, the key published
   * at /cdn-cgi/access/certs, which is how endpoints verify Access), adding `iss`.
   */
  readonly sign: (claims: ExternalEvaluationRequestClaims) => Promise<string>;
  /** Whole-exchange deadline, JWKS fetch included. Default 5000 ms. */
  readonly timeoutMs?: number;
  /** How long a verified answer (success or not) is reused for the same URL and identity. Default 30 s. */
  readonly cacheTtlMs?: number;
  /** How long a failed exchange is remembered, so a dead endpoint is not hit (and waited for) per request. Default 5 s. */
  readonly failureCacheTtlMs?: number;
  /** Cached answers kept at most (least recently used are dropped). Default 10000. */
  readonly maxCacheEntries?: number;
  /** Clock, in epoch ms. Default Date.now. */
  readonly now?: () => number;
}

export interface ExternalEvaluator {
  /** The endpoint's verdict for this identity; never rejects. */
  evaluate(target: ExternalEvaluationTarget, identity: Identity): Promise<ExternalEvaluationResult>;
  /** Verdicts for all targets (e.g. CompiledApp.externalEvaluations), keyed by evaluate_url for RequestContext. */
  evaluateAll(
    targets: readonly ExternalEvaluationTarget[],
    identity: Identity,
  ): Promise<Map<string, ExternalEvaluationResult>>;
}

/** The answers Access accepts are RS256 or ES256 signatures (the example endpoint uses RS256). */
const ALGORITHMS = ['RS256', 'ES256'];
/** The request token only needs to outlive the exchange. */
const REQUEST_TOKEN_LIFETIME_S = 60;
/** An answer is one short JWT; anything larger is not one. */
const MAX_RESPONSE_BYTES = 64 * 1024;
/** Distinct keys_url values remembered; they come from configuration, so this is generous. */
const MAX_KEY_SETS = 256;

/** A failure with a message fit for the policy trace. */
class ExchangeFailure extends Error {}

function identityClaims(identity: Identity): ExternalEvaluationRequestClaims['identity'] {
  return { email: identity.email, user_uuid: identity.userUid, idp: identity.idp, amr: identity.amr };
}

function rejectOnAbort<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    if (signal.aborted) onAbort();
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}

async function readBody(response: Response): Promise<string> {
  const chunks: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of response.body ?? []) {
    size += chunk.byteLength;
    if (size > MAX_RESPONSE_BYTES)
      throw new ExchangeFailure(`answer larger than ${MAX_RESPONSE_BYTES} bytes`);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

function describeFailure(error: unknown, timeoutMs: number): string {
  if (error instanceof ExchangeFailure) return error.message;
  if (!(error instanceof Error)) return `failed: ${String(error)}`;
  if (error.name === 'TimeoutError') return `no answer within ${timeoutMs} ms`;
  // jose errors carry a code (ERR_JWS_SIGNATURE_VERIFICATION_FAILED, ERR_JWT_EXPIRED…); fetch's
  // "fetch failed" carries the real reason (ECONNREFUSED, "unexpected redirect"…) in its cause.
  const cause = error.cause instanceof Error ? error.cause : undefined;
  const code = (error as { code?: unknown }).code ?? (cause as { code?: unknown } | undefined)?.code;
  return `failed: ${typeof code === 'string' ? code : (cause ?? error).message}`;
}

export function createExternalEvaluator(options: ExternalEvaluatorOptions): ExternalEvaluator {
  const timeoutMs = options.timeoutMs ?? 5000;
  const cacheTtlMs = options.cacheTtlMs ?? 30_000;
  const failureCacheTtlMs = options.failureCacheTtlMs ?? 5000;
  const maxCacheEntries = options.maxCacheEntries ?? 10_000;
  const now = options.now ?? Date.now;
  const cache = new Map<string, ExternalEvaluationResult>();
  const pending = new Map<string, Promise<ExternalEvaluationResult>>();
  const keySets = new Map<string, ReturnType<typeof createRemoteJWKSet>>();

  const keySet = (keysUrl: string) => {
    let keys = keySets.get(keysUrl);
    if (keys === undefined) {
      if (keySets.size >= MAX_KEY_SETS) keySets.clear();
      keys = createRemoteJWKSet(new URL(keysUrl), { timeoutDuration: timeoutMs });
      keySets.set(keysUrl, keys);
    }
    return keys;
  };

  /** One exchange; resolves to the verified `success` claim and the answer's expiry (epoch ms). */
  const exchange = async (
    target: ExternalEvaluationTarget,
    identity: ExternalEvaluationRequestClaims['identity'],
  ) => {
    const signal = AbortSignal.timeout(timeoutMs);
    const nonce = randomBytes(32).toString('base64url');
    const issuedAt = Math.floor(now() / 1000);
    const token = await options.sign({
      aud: target.evaluateUrl,
      iat: issuedAt,
      exp: issuedAt + REQUEST_TOKEN_LIFETIME_S,
      nonce,
      identity,
    });
    const response = await fetch(target.evaluateUrl, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json' },
      body: JSON.stringify({ token }),
      // A redirect would send the signed identity somewhere nobody configured.
      redirect: 'error',
      signal,
    });
    if (response.status !== 200) {
      await response.body?.cancel();
      throw new ExchangeFailure(`answered HTTP ${response.status}`);
    }
    let answer: unknown;
    try {
      answer = JSON.parse(await readBody(response));
    } catch (error) {
      throw error instanceof ExchangeFailure ? error : new ExchangeFailure('answer is not JSON');
    }
    const answerToken = (answer as { token?: unknown } | null)?.token;
    if (typeof answerToken !== 'string') throw new ExchangeFailure('answer has no token');
    const { payload } = await rejectOnAbort(
      jwtVerify(answerToken, keySet(target.keysUrl), {
        algorithms: ALGORITHMS,
        requiredClaims: ['exp'],
        currentDate: new Date(now()),
      }),
      signal,
    );
    // The nonce ties the answer to this request: a replayed earlier answer must not count.
    if (payload.nonce !== nonce) throw new ExchangeFailure('answer nonce does not match the request');
    return { success: payload.success === true, expiresAt: payload.exp! * 1000 };
  };

  const remember = (key: string, result: ExternalEvaluationResult) => {
    cache.delete(key);
    cache.set(key, result);
    if (cache.size > maxCacheEntries) cache.delete(cache.keys().next().value!);
    return result;
  };

  const fetchVerdict = async (
    target: ExternalEvaluationTarget,
    identity: ExternalEvaluationRequestClaims['identity'],
    key: string,
  ) => {
    try {
      const answer = await exchange(target, identity);
      return remember(key, {
        success: answer.success,
        expiresAt: Math.min(now() + cacheTtlMs, answer.expiresAt),
        ...(answer.success ? {} : { detail: 'answered success: false' }),
      });
    } catch (error) {
      return remember(key, {
        success: false,
        expiresAt: now() + failureCacheTtlMs,
        detail: describeFailure(error, timeoutMs),
      });
    }
  };

  const evaluate = (
    target: ExternalEvaluationTarget,
    identity: Identity,
  ): Promise<ExternalEvaluationResult> => {
    const claims = identityClaims(identity);
    // Per URL and identity: the same user with another IdP or other AMR values may get another answer.
    const key = JSON.stringify([target.evaluateUrl, target.keysUrl, claims]);
    const cached = cache.get(key);
    if (cached !== undefined && now() < cached.expiresAt) return Promise.resolve(remember(key, cached));
    let inFlight = pending.get(key);
    if (inFlight === undefined) {
      inFlight = fetchVerdict(target, claims, key).finally(() => pending.delete(key));
      pending.set(key, inFlight);
    }
    return inFlight;
  };

  return {
    evaluate,
    async evaluateAll(targets, identity) {
      const results = await Promise.all(targets.map((target) => evaluate(target, identity)));
      return new Map(targets.map((target, index) => [target.evaluateUrl, results[index]!]));
    },
  };
}
