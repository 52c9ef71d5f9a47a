// One compiled matcher per selector. Everything that can be prepared once is prepared here (lower
// case, parsed ranges, list sets), so `test` is a comparison or a lookup. Matching follows
// Cloudflare's selector descriptions [D: access-controls/policies/index.mdx; TS: AccessRule];
// Gatehouse's readings of unclear points are noted per selector.
import { type CompiledBody, type Matcher, matchBody } from './body.ts';
import { equalsLower, type Facts } from './facts.ts';
import { IpRangeSet, parseCidr } from './ip.ts';
import { selectorOf } from './rules.ts';
import type { Rule, SelectorName, SelectorValue } from './schema.ts';

/** Compiled groups and lists, shared by every rule that names them. */
export interface MatcherEnv {
  group(id: string): { readonly name: string; readonly body: CompiledBody };
  emailList(id: string): { readonly name: string; readonly emails: ReadonlySet<string> };
  ipList(id: string): { readonly name: string; readonly ranges: IpRangeSet };
}

interface MatcherParts {
  test(facts: Facts): boolean;
  explain(facts: Facts, matched: boolean): string;
  group?: CompiledBody;
}

type Factory<K extends SelectorName> = (value: SelectorValue<K>, env: MatcherEnv) => MatcherParts;

const is = (matched: boolean) => (matched ? 'is' : 'is not');
const NONE: readonly never[] = [];

/** `ip` and `ip_list`: the client address (IPv4-mapped IPv6 counts as IPv4, see ip.ts) is in a range. */
function rangeMatcher(ranges: IpRangeSet, where: string): MatcherParts {
  return {
    test: (facts) => facts.ip !== null && ranges.has(facts.ip),
    explain: (facts, matched) => {
      const text = facts.context.clientIp;
      if (text === undefined) return 'the request has no client IP';
      if (facts.ip === null) return `client IP "${text}" is not a valid address`;
      return `client IP ${text} ${is(matched)} in ${where}`;
    },
  };
}

/** OIDC claim values are strings, numbers or booleans; the rule's value is their text form. */
function claimIs(claim: unknown, value: string): boolean {
  return (
    claim === value || ((typeof claim === 'number' || typeof claim === 'boolean') && String(claim) === value)
  );
}

/** Equality, or membership when the claim is an array (a `groups` claim). */
function claimHas(claim: unknown, value: string): boolean {
  if (!Array.isArray(claim)) return claimIs(claim, value);
  for (const element of claim) if (claimIs(element, value)) return true;
  return false;
}

function idpIs(facts: Facts, idpId: string): boolean {
  const idp = facts.identity?.idp;
  return idp !== undefined && equalsLower(idp.id, idpId);
}

function explainIdp(facts: Facts, idpId: string): string {
  const idp = facts.identity?.idp;
  return idp === undefined
    ? 'the identity has no login method'
    : `logged in with IdP ${idp.id}, not ${idpId}`;
}

const FACTORIES: { readonly [K in SelectorName]: Factory<K> } = {
  // Emails compare case-insensitively.
  email: ({ email }) => {
    const wanted = email.toLowerCase();
    return {
      test: (facts) => facts.email === wanted,
      explain: (facts, matched) =>
        facts.email === null ? 'the identity has no email' : `email ${facts.email} ${is(matched)} ${wanted}`,
    };
  },

  // The part after the last "@", exactly: example.com does not match a@dev.example.com.
  email_domain: ({ domain }) => {
    const wanted = domain.toLowerCase();
    return {
      test: (facts) => facts.emailDomain === wanted,
      explain: (facts, matched) =>
        facts.email === null
          ? 'the identity has no email'
          : `email domain ${facts.emailDomain ?? '(none)'} ${is(matched)} ${wanted}`,
    };
  },

  email_list: ({ id }, env) => {
    const list = env.emailList(id);
    return {
      test: (facts) => facts.email !== null && list.emails.has(facts.email),
      explain: (facts, matched) =>
        facts.email === null
          ? 'the identity has no email'
          : `email ${facts.email} ${is(matched)} in email list "${list.name}"`,
    };
  },

  everyone: () => ({ test: () => true, explain: () => 'everyone matches' }),

  ip: ({ ip }) => rangeMatcher(new IpRangeSet([parseCidr(ip)!]), ip),

  ip_list: ({ id }, env) => {
    const list = env.ipList(id);
    return rangeMatcher(list.ranges, `IP list "${list.name}"`);
  },

  group: ({ id }, env) => {
    const { name, body } = env.group(id);
    return {
      test: (facts) => matchBody(body, facts, null),
      explain: (_facts, matched) => `group "${name}" ${matched ? 'matched' : 'did not match'}`,
      group: body,
    };
  },

  // The identity provider used at login [D: "Checks the identity provider used at the time of login"].
  login_method: ({ id }) => {
    const wanted = id.toLowerCase();
    return {
      test: (facts) => idpIs(facts, wanted),
      explain: (facts, matched) => (matched ? `logged in with IdP ${wanted}` : explainIdp(facts, wanted)),
    };
  },

  // RFC 8176 `amr` values the IdP reported, e.g. "mfa"; exact, as the registry's values are.
  auth_method: ({ auth_method }) => ({
    test: (facts) => facts.identity?.amr?.includes(auth_method) === true,
    explain: (facts, matched) =>
      `authentication methods [${(facts.identity?.amr ?? []).join(', ')}] ${matched ? 'include' : 'do not include'} ${auth_method}`,
  }),

  // The claim from the named OIDC IdP equals the value, or contains it when the claim is an array
  // (a `groups` claim). Claims of another IdP never count.
  oidc: ({ claim_name, claim_value, identity_provider_id }) => {
    const idpId = identity_provider_id.toLowerCase();
    const claimOf = (facts: Facts): unknown => {
      const claims = facts.identity?.oidcClaims;
      return claims !== undefined && Object.hasOwn(claims, claim_name) ? claims[claim_name] : undefined;
    };
    return {
      test: (facts) => idpIs(facts, idpId) && claimHas(claimOf(facts), claim_value),
      explain: (facts, matched) => {
        if (!idpIs(facts, idpId)) return explainIdp(facts, idpId);
        const claim = claimOf(facts);
        if (claim === undefined) return `the identity has no claim ${claim_name}`;
        const verb = Array.isArray(claim) ? 'contain' : 'equal';
        return `claim ${claim_name} = ${JSON.stringify(claim)} ${matched ? `${verb}s` : `does not ${verb}`} "${claim_value}"`;
      },
    };
  },

  // Organisation (and team, when given) from the named GitHub IdP; GitHub names are case-insensitive.
  'github-organization': ({ name, team, identity_provider_id }) => {
    const idpId = identity_provider_id.toLowerCase();
    const org = name.toLowerCase();
    const wantedTeam = team?.toLowerCase();
    const membership = (facts: Facts) => {
      for (const candidate of facts.identity?.github?.orgs ?? NONE) {
        if (equalsLower(candidate.name, org)) return candidate;
      }
      return undefined;
    };
    return {
      test: (facts) => {
        if (!idpIs(facts, idpId)) return false;
        const found = membership(facts);
        if (found === undefined) return false;
        if (wantedTeam === undefined) return true;
        for (const candidate of found.teams) if (equalsLower(candidate, wantedTeam)) return true;
        return false;
      },
      explain: (facts, matched) => {
        if (!idpIs(facts, idpId)) return explainIdp(facts, idpId);
        const target =
          wantedTeam === undefined
            ? `GitHub organization ${org}`
            : `team ${wantedTeam} of GitHub organization ${org}`;
        if (matched) return `member of ${target}`;
        return membership(facts) === undefined
          ? `not a member of GitHub organization ${org}`
          : `not a member of ${target}`;
      },
    };
  },

  geo: ({ country_code }) => {
    const wanted = country_code.toUpperCase();
    return {
      test: (facts) => facts.country === wanted,
      explain: (facts, matched) =>
        facts.country === null
          ? 'the request has no country'
          : `request country ${facts.country} ${is(matched)} ${wanted}`,
    };
  },

  // "Any valid client certificate": the caller verified it against the account's mTLS CAs.
  certificate: () => ({
    test: (facts) => facts.context.mtls?.present === true,
    explain: (_facts, matched) =>
      matched ? 'a valid client certificate was presented' : 'no valid client certificate',
  }),

  common_name: ({ common_name }) => ({
    test: (facts) => facts.context.mtls?.present === true && facts.context.mtls.commonName === common_name,
    explain: (facts, matched) => {
      const mtls = facts.context.mtls;
      if (mtls?.present !== true) return 'no valid client certificate';
      return `certificate common name ${mtls.commonName ?? '(none)'} ${is(matched)} ${common_name}`;
    },
  }),

  service_token: ({ token_id }) => {
    const wanted = token_id.toLowerCase();
    return {
      test: (facts) =>
        facts.context.serviceTokenId !== undefined && equalsLower(facts.context.serviceTokenId, wanted),
      explain: (facts, matched) =>
        facts.context.serviceTokenId === undefined
          ? 'the request has no valid service token'
          : `service token ${facts.context.serviceTokenId} ${is(matched)} ${wanted}`,
    };
  },

  any_valid_service_token: () => ({
    test: (facts) => facts.context.serviceTokenId !== undefined,
    explain: (facts, matched) =>
      matched
        ? `service token ${facts.context.serviceTokenId} is valid`
        : 'the request has no valid service token',
  }),

  // The caller verified the linked token (spec §5.3, §5.4) and reports the uid of the app it was
  // issued for; the rule names that app by uid, not by AUD.
  linked_app_token: ({ app_uid }) => {
    const wanted = app_uid.toLowerCase();
    return {
      test: (facts) =>
        facts.context.linkedAppUid !== undefined && equalsLower(facts.context.linkedAppUid, wanted),
      explain: (facts, matched) =>
        facts.context.linkedAppUid === undefined
          ? 'the request has no valid linked app token'
          : `linked token was issued for app ${facts.context.linkedAppUid}, which ${is(matched)} ${wanted}`,
    };
  },

  // The engine does no I/O: the caller fetched the endpoint's verdict (src/policy-external) and
  // passes it keyed by evaluate_url. A missing or expired verdict fails closed.
  external_evaluation: ({ evaluate_url }) => {
    const verdict = (facts: Facts) => facts.context.externalEvaluations?.get(evaluate_url);
    return {
      test: (facts) => {
        const result = verdict(facts);
        return result?.success === true && facts.nowMs < result.expiresAt;
      },
      explain: (facts, matched) => {
        const result = verdict(facts);
        if (result === undefined) return `no result from ${evaluate_url} (fails closed)`;
        if (matched) return `${evaluate_url} answered success`;
        if (!result.success)
          return `${evaluate_url} did not answer success${result.detail ? `: ${result.detail}` : ''}`;
        return `the result from ${evaluate_url} expired at ${new Date(result.expiresAt).toISOString()}`;
      },
    };
  },
};

export function compileRule(rule: Rule, env: MatcherEnv): Matcher {
  const selector = selectorOf(rule);
  const value = (rule as Readonly<Record<string, unknown>>)[selector];
  const parts = (FACTORIES[selector] as Factory<SelectorName>)(value as never, env);
  // One object shape for every matcher keeps the evaluation loop's property accesses monomorphic.
  return { selector, test: parts.test, explain: parts.explain, group: parts.group };
}
