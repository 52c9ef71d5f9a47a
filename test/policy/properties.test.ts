// Properties of the evaluation semantics over random apps and requests (fast-check).
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  type CompiledApp,
  compilePolicies,
  type Decision,
  evaluate,
  type GroupDefinition,
  type PolicyDecision,
  type PolicyDefinition,
  type RequestContext,
  type Rule,
} from '../../src/policy/index.ts';
import { APP_MCP, APP_OTHER, IDP_OIDC, IDP_OTP, NOW, TOKEN_CI, TOKEN_OTHER, uuid } from './fixtures.ts';

const STAFF = uuid(0xe1);
const OFFICE = uuid(0xe2);
const groups: GroupDefinition[] = [
  {
    id: STAFF,
    name: 'Staff',
    include: [{ email_domain: { domain: 'example.com' } }],
    exclude: [{ email: { email: 'bob@example.com' } }],
  },
  { id: OFFICE, name: 'Office', include: [{ ip: { ip: '192.0.2.0/24' } }, { ip: { ip: '2001:db8::/32' } }] },
];

// Small value domains, so that rules and requests meet often.
const emails = ['alice@example.com', 'Bob@Example.com', 'carol@partner.org'];
const idps = [IDP_OTP, IDP_OIDC];
const tokens = [TOKEN_CI, TOKEN_OTHER];
const apps = [APP_MCP, APP_OTHER];
const cidrs = [
  '10.0.0.0/8',
  '10.1.0.0/16',
  '192.0.2.0/24',
  '2001:db8::/32',
  '0.0.0.0/0',
  '::/0',
  '203.0.113.1/32',
];
const clientIps = ['10.1.2.3', '192.0.2.7', '2001:db8::5', '::ffff:10.1.2.3', '203.0.113.1', '198.51.100.1'];
const countries = ['US', 'DE', 'pt'];
const commonNames = ['ci', 'cd'];

const identityRule: fc.Arbitrary<Rule> = fc.oneof(
  fc.constantFrom(...emails).map((email) => ({ email: { email } })),
  fc.constantFrom('example.com', 'partner.org').map((domain) => ({ email_domain: { domain } })),
  fc.constantFrom(...idps).map((id) => ({ login_method: { id } })),
  fc.constantFrom('mfa', 'pwd').map((auth_method) => ({ auth_method: { auth_method } })),
  fc
    .constantFrom('admins', 'staff')
    .map((claim_value) => ({ oidc: { claim_name: 'groups', claim_value, identity_provider_id: IDP_OIDC } })),
  fc.constant({ group: { id: STAFF } }),
);
const requestRule: fc.Arbitrary<Rule> = fc.oneof(
  fc.constant({ everyone: {} }),
  fc.constantFrom(...cidrs).map((ip) => ({ ip: { ip } })),
  fc.constantFrom(...countries).map((country_code) => ({ geo: { country_code } })),
  fc.constant({ certificate: {} }),
  fc.constantFrom(...commonNames).map((common_name) => ({ common_name: { common_name } })),
  fc.constant({ group: { id: OFFICE } }),
);
const serviceTokenRule: fc.Arbitrary<Rule> = fc.oneof(
  fc.constantFrom(...tokens).map((token_id) => ({ service_token: { token_id } })),
  fc.constant({ any_valid_service_token: {} }),
);
const linkedRule: fc.Arbitrary<Rule> = fc
  .constantFrom(...apps)
  .map((app_uid) => ({ linked_app_token: { app_uid } }));

/** Rules each decision accepts (the validation rules of spec §3.3 and §5.2). */
const rulesFor: Record<PolicyDecision, fc.Arbitrary<Rule>> = {
  allow: fc.oneof(identityRule, requestRule),
  deny: fc.oneof(identityRule, requestRule),
  bypass: fc.oneof(requestRule, linkedRule),
  non_identity: fc.oneof(requestRule, serviceTokenRule, linkedRule),
};
const notEveryone = (rule: Rule) => !('everyone' in rule);

const decisionArb = fc.constantFrom<PolicyDecision>('allow', 'deny', 'bypass', 'non_identity');

const policyArb = (precedence: number, decisions = decisionArb): fc.Arbitrary<PolicyDefinition> =>
  decisions.chain((decision) =>
    fc.record({
      id: fc.constant(`p${precedence}`),
      name: fc.constant(`P${precedence}`),
      decision: fc.constant(decision),
      precedence: fc.constant(precedence),
      include: fc.array(rulesFor[decision], { minLength: 1, maxLength: 3 }),
      require: fc.array(rulesFor[decision], { maxLength: 2 }),
      exclude: fc.array(rulesFor[decision].filter(notEveryone), { maxLength: 2 }),
    }),
  );

const policiesArb: fc.Arbitrary<PolicyDefinition[]> = fc
  .uniqueArray(fc.integer({ min: 1, max: 1000 }), { maxLength: 6 })
  .chain((precedences) => fc.tuple(...precedences.map((precedence) => policyArb(precedence))));

const contextArb: fc.Arbitrary<RequestContext> = fc.record(
  {
    now: fc.constant(NOW),
    identity: fc.record(
      {
        email: fc.constantFrom(...emails, 'ALICE@EXAMPLE.COM'),
        idp: fc.constantFrom(...idps).map((id) => ({ id, type: id === IDP_OIDC ? 'oidc' : 'onetimepin' })),
        amr: fc.subarray(['pwd', 'mfa']),
        oidcClaims: fc.subarray(['admins', 'staff']).map((list) => ({ groups: list })),
      },
      { requiredKeys: [] },
    ),
    clientIp: fc.constantFrom(...clientIps),
    country: fc.constantFrom(...countries, 'us', 'FR'),
    mtls: fc.record(
      { present: fc.boolean(), commonName: fc.constantFrom(...commonNames) },
      { requiredKeys: ['present'] },
    ),
    serviceTokenId: fc.constantFrom(...tokens),
    linkedAppUid: fc.constantFrom(...apps),
  },
  { requiredKeys: ['now'] },
);

const compile = (policies: readonly PolicyDefinition[]) => compilePolicies(policies, { groups });
const grants = (decision: Decision) => decision.decision !== 'deny';
const isGranting = (decision: PolicyDecision) => decision !== 'deny';

/** A policy of the app, picked by index, with a rule valid for its decision. */
const appWithPickArb = policiesArb
  .filter((policies) => policies.length > 0)
  .chain((policies) =>
    fc.nat({ max: policies.length - 1 }).chain((index) =>
      fc.record({
        policies: fc.constant(policies),
        index: fc.constant(index),
        rule: rulesFor[policies[index]!.decision],
      }),
    ),
  );

function withPolicy(
  policies: PolicyDefinition[],
  index: number,
  change: (policy: PolicyDefinition) => PolicyDefinition,
) {
  return policies.map((policy, i) => (i === index ? change(policy) : policy));
}

describe('properties', () => {
  it('adding an exclude to a granting policy never widens access', () => {
    fc.assert(
      fc.property(appWithPickArb, contextArb, ({ policies, index, rule }, context) => {
        fc.pre(isGranting(policies[index]!.decision) && notEveryone(rule));
        const before = grants(evaluate(compile(policies), context));
        const changed = withPolicy(policies, index, (p) => ({ ...p, exclude: [...(p.exclude ?? []), rule] }));
        const after = grants(evaluate(compile(changed), context));
        expect(!after || before).toBe(true);
      }),
    );
  });

  it('adding a require to a granting policy never widens access', () => {
    fc.assert(
      fc.property(appWithPickArb, contextArb, ({ policies, index, rule }, context) => {
        fc.pre(isGranting(policies[index]!.decision));
        const before = grants(evaluate(compile(policies), context));
        const changed = withPolicy(policies, index, (p) => ({ ...p, require: [...(p.require ?? []), rule] }));
        const after = grants(evaluate(compile(changed), context));
        expect(!after || before).toBe(true);
      }),
    );
  });

  it('adding a Block policy never widens access', () => {
    fc.assert(
      fc.property(
        policiesArb,
        policyArb(1001, fc.constant('deny')),
        contextArb,
        (policies, block, context) => {
          const before = grants(evaluate(compile(policies), context));
          const after = grants(evaluate(compile([...policies, block]), context));
          expect(!after || before).toBe(true);
        },
      ),
    );
  });

  it('an app without policies denies every request', () => {
    const empty = compile([]);
    fc.assert(
      fc.property(contextArb, (context) => {
        expect(evaluate(empty, context)).toMatchObject({ decision: 'deny', policy: null });
      }),
    );
  });

  it('runs Bypass and Service Auth before Allow and Block, whatever their precedence', () => {
    fc.assert(
      fc.property(policiesArb, contextArb, (policies, context) => {
        const app = compile(policies);
        const result = evaluate(app, context, { trace: true });
        // Trace order is evaluation order: Bypass and Service Auth first, each group by precedence.
        const firstPhase = (decision: PolicyDecision) => decision === 'bypass' || decision === 'non_identity';
        const order = result.trace!.map((entry) => [firstPhase(entry.decision) ? 0 : 1, entry.precedence]);
        expect(order).toEqual([...order].sort(([a, p], [b, q]) => a! - b! || p! - q!));
        // The earliest (by precedence) non-identity policy that matches on its own decides.
        const soloMatches = policies
          .filter((policy) => policy.decision === 'bypass' || policy.decision === 'non_identity')
          .filter((policy) => evaluate(compile([policy]), context).policy !== null)
          .sort((a, b) => a.precedence - b.precedence);
        if (soloMatches.length > 0) expect(result.policy?.id).toBe(soloMatches[0]!.id);
        expect(result.policy?.id).toBe(result.trace!.find((entry) => entry.result === 'matched')?.policyId);
      }),
    );
  });

  it('matches a policy when an include matches, every require matches and no exclude matches', () => {
    fc.assert(
      fc.property(policyArb(1), contextArb, (policy, context) => {
        const single = (rule: Rule) =>
          evaluate(compile([{ ...policy, include: [rule], require: [], exclude: [] }]), context).policy !==
          null;
        const expected =
          policy.include.some(single) &&
          (policy.require ?? []).every(single) &&
          !(policy.exclude ?? []).some(single);
        expect(evaluate(compile([policy]), context).policy !== null).toBe(expected);
      }),
    );
  });

  it('is deterministic and independent of key and array order', () => {
    fc.assert(
      fc.property(policiesArb, contextArb, fc.integer(), (policies, context, seed) => {
        const app = compile(policies);
        const reference = evaluate(app, context, { trace: true });
        expect(evaluate(app, context, { trace: true })).toEqual(reference);
        const random = lcg(seed);
        const reordered = compile(
          shuffle(
            policies.map((policy) => permuteKeys(policy, random)),
            random,
          ),
        );
        const again = evaluate(reordered, permuteKeys(context, random), { trace: true });
        expect(again).toEqual(reference);
        expect(evaluate(reordered, context).decision).toBe(reference.decision);
      }),
    );
  });

  it('decides the same with and without the trace', () => {
    fc.assert(
      fc.property(policiesArb, contextArb, (policies, context) => {
        const app: CompiledApp = compile(policies);
        const plain = evaluate(app, context);
        const traced = evaluate(app, context, { trace: true });
        expect([traced.decision, traced.policy]).toEqual([plain.decision, plain.policy]);
      }),
    );
  });
});

/** A small deterministic generator for shuffles driven by one fast-check seed. */
function lcg(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (Math.imul(state, 1_664_525) + 1_013_904_223) >>> 0;
    return state / 2 ** 32;
  };
}

function shuffle<T>(items: T[], random: () => number): T[] {
  const copy = [...items];
  for (let i = copy.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [copy[i], copy[j]] = [copy[j]!, copy[i]!];
  }
  return copy;
}

/** A deep copy whose plain objects have their keys in a random order (Maps and arrays kept). */
function permuteKeys<T>(value: T, random: () => number): T {
  if (Array.isArray(value)) return value.map((item) => permuteKeys(item, random)) as T;
  if (value === null || typeof value !== 'object' || value instanceof Map) return value;
  const entries = shuffle(Object.entries(value), random).map(([key, item]) => [
    key,
    permuteKeys(item, random),
  ]);
  return Object.fromEntries(entries) as T;
}
