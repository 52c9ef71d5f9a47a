// The policy engine's data: what it compiles (policies, groups, lists in Cloudflare's shapes),
// what one evaluation reads (RequestContext) and what it answers (Decision, trace).
import type { Rule } from './schema.ts';

export type { Rule, SelectorName } from './schema.ts';

/** UI labels: Allow, Block, Service Auth, Bypass [D: access-controls/policies/index.mdx]. */
export type PolicyDecision = 'allow' | 'deny' | 'non_identity' | 'bypass';

export interface RuleBody {
  /** OR: at least one must match. Cloudflare requires at least one include rule. */
  readonly include: readonly Rule[];
  /** AND: every one must match. */
  readonly require?: readonly Rule[];
  /** NOT: none may match. */
  readonly exclude?: readonly Rule[];
}

/** A policy as attached to one application (Cloudflare's policy object with its `precedence`). */
export interface PolicyDefinition extends RuleBody {
  readonly id: string;
  readonly name: string;
  readonly decision: PolicyDecision;
  /** Order within its phase; unique per app. */
  readonly precedence: number;
  /** Go duration overriding the app's session duration for users this policy lets in. */
  readonly session_duration?: string | null;
}

/** An Access group (`/access/groups`): a reusable rule body, named by `{ group: { id } }`. */
export interface GroupDefinition extends RuleBody {
  readonly id: string;
  readonly name: string;
}

/** A Zero Trust list named by `email_list` or `ip_list` rules. */
export interface ListDefinition {
  readonly id: string;
  readonly name?: string;
  readonly type: 'EMAIL' | 'IP';
  readonly items: readonly string[];
}

/**
 * The login identity: from the session (at login) or from the verified app token the request
 * carries. Cloudflare checks identity selectors "at login only", which is what re-evaluating this
 * snapshot gives.
 */
export interface Identity {
  readonly email?: string;
  /** Gatehouse user UUID (the app token's `sub`); sent to external evaluation endpoints. */
  readonly userUid?: string;
  /** The identity provider used to log in. */
  readonly idp?: { readonly id: string; readonly type: string };
  /** RFC 8176 authentication method references reported by the IdP, e.g. ["pwd", "mfa"]. */
  readonly amr?: readonly string[];
  /** Claims from an OIDC IdP's ID token / userinfo, e.g. `groups`. Read by the `oidc` selector. */
  readonly oidcClaims?: Readonly<Record<string, unknown>>;
  /** GitHub organisations (and team names or slugs) from a GitHub IdP login. */
  readonly github?: {
    readonly orgs: readonly { readonly name: string; readonly teams: readonly string[] }[];
  };
}

/** What an external evaluation endpoint answered, fetched before evaluation (src/policy-external). */
export interface ExternalEvaluationResult {
  /** True only for a verified response carrying `success: true` and the request's nonce. */
  readonly success: boolean;
  /** Epoch ms after which the result must not be used; evaluation treats it as missing. */
  readonly expiresAt: number;
  /** Why it failed (timeout, bad signature, …), shown in traces. */
  readonly detail?: string;
}

/**
 * Facts about one request. Everything except `now` may be absent; an absent fact never matches
 * a rule that needs it (fail closed). The caller vouches for every fact: it has verified the
 * certificate, the service token secret and the linked token before putting them here.
 */
export interface RequestContext {
  /** Current time (epoch ms or Date); the engine never reads the clock. */
  readonly now: number | Date;
  /** Absent for requests without a session or app token (service tokens, linked tokens, bypass). */
  readonly identity?: Identity;
  /** Client address, IPv4 or IPv6 (IPv4-mapped IPv6 is treated as IPv4). */
  readonly clientIp?: string;
  /** ISO 3166-1 alpha-2 country of the client address, any case. */
  readonly country?: string;
  /** The client certificate presented on this connection and verified by the caller. */
  readonly mtls?: { readonly present: boolean; readonly commonName?: string };
  /** Id of the service token whose client id and secret the caller verified. */
  readonly serviceTokenId?: string;
  /** Uid of the app a verified linked token (app JWT or SaaS access token) was issued for. */
  readonly linkedAppUid?: string;
  /** External evaluation results, keyed by `evaluate_url`. A missing or expired result never matches. */
  readonly externalEvaluations?: ReadonlyMap<string, ExternalEvaluationResult>;
}

/**
 * The two phases of Cloudflare's evaluation order: Bypass and Service Auth policies first
 * (`non_identity` phase, no login needed), then Allow and Block (`identity` phase, needs a login).
 */
export type Phase = 'non_identity' | 'identity';

/** A compiled policy's public description, returned with decisions. */
export interface PolicyInfo {
  readonly id: string;
  readonly name: string;
  readonly decision: PolicyDecision;
  readonly precedence: number;
  readonly phase: Phase;
  /** The policy's own session_duration, or null to use the app's. */
  readonly sessionDuration: string | null;
  /** sessionDuration in milliseconds, or null. */
  readonly sessionDurationMs: number | null;
}

export interface RuleTrace {
  readonly rule: string;
  readonly matched: boolean;
  readonly reason: string;
  /** For `group` rules: how the group's own rules fared. */
  readonly group?: BodyTrace;
}

export interface BodyTrace {
  readonly include: RuleTrace[];
  readonly require: RuleTrace[];
  readonly exclude: RuleTrace[];
}

export interface PolicyTrace extends BodyTrace {
  readonly policyId: string;
  readonly name: string;
  readonly decision: PolicyDecision;
  readonly precedence: number;
  readonly phase: Phase;
  readonly result: 'matched' | 'not_matched' | 'skipped';
  /** Why a policy was skipped (an earlier policy decided, or no identity for the identity phase). */
  readonly reason?: string;
}

export interface Decision {
  /** The matched policy's decision, or `deny` when no policy matched (Access denies by default). */
  readonly decision: PolicyDecision;
  /** The policy that decided; null for the default deny. */
  readonly policy: PolicyInfo | null;
  /** Every policy in evaluation order, when asked for with `{ trace: true }`; otherwise null. */
  readonly trace: readonly PolicyTrace[] | null;
}

/** One phase's answer: `no_match` means evaluation goes on (to the next phase or the default deny). */
export interface PhaseResult {
  readonly decision: PolicyDecision | 'no_match';
  readonly policy: PolicyInfo | null;
  readonly trace: readonly PolicyTrace[] | null;
}

export interface EvaluateOptions {
  /** Build the explanation trace. Off by default: the hot path allocates no explanation strings. */
  readonly trace?: boolean;
}
