// The explanation trace: per policy in evaluation order, which rule matched or failed and why.
import { describe, expect, it } from 'vitest';
import type { CompiledBody } from '../../src/policy/body.ts';
import { compilePolicies, evaluate, type RequestContext } from '../../src/policy/index.ts';
import { NOW, policy, uuid } from './fixtures.ts';

const STAFF = uuid(0xe1);
const groups = [{ id: STAFF, name: 'Staff', include: [{ email_domain: { domain: 'example.com' } }] }];

const bob: RequestContext = {
  now: NOW,
  identity: { email: 'bob@x.org' },
  clientIp: '10.1.2.3',
  country: 'de',
};

describe('trace', () => {
  const app = compilePolicies(
    [
      policy('bypass', [{ ip: { ip: '192.0.2.0/24' } }], { name: 'office bypass', precedence: 1 }),
      policy('allow', [{ email: { email: 'alice@x.org' } }, { group: { id: STAFF } }], {
        name: 'staff',
        precedence: 2,
        require: [{ geo: { country_code: 'DE' } }],
        exclude: [{ ip: { ip: '10.0.0.0/8' } }],
      }),
      policy('allow', [{ email_domain: { domain: 'x.org' } }], { name: 'x.org', precedence: 3 }),
      policy('allow', [{ everyone: {} }], { name: 'everyone', precedence: 4 }),
    ],
    { groups },
  );

  it('explains every rule of every evaluated policy, and skips the rest', () => {
    const result = evaluate(app, bob, { trace: true });
    expect(result.policy?.name).toBe('x.org');
    expect(result.trace).toEqual([
      {
        policyId: expect.any(String),
        name: 'office bypass',
        decision: 'bypass',
        precedence: 1,
        phase: 'non_identity',
        result: 'not_matched',
        include: [{ rule: 'ip', matched: false, reason: 'client IP 10.1.2.3 is not in 192.0.2.0/24' }],
        require: [],
        exclude: [],
      },
      {
        policyId: expect.any(String),
        name: 'staff',
        decision: 'allow',
        precedence: 2,
        phase: 'identity',
        result: 'not_matched',
        include: [
          { rule: 'email', matched: false, reason: 'email bob@x.org is not alice@x.org' },
          {
            rule: 'group',
            matched: false,
            reason: 'group "Staff" did not match',
            group: {
              include: [
                { rule: 'email_domain', matched: false, reason: 'email domain x.org is not example.com' },
              ],
              require: [],
              exclude: [],
            },
          },
        ],
        require: [{ rule: 'geo', matched: true, reason: 'request country DE is DE' }],
        exclude: [{ rule: 'ip', matched: true, reason: 'client IP 10.1.2.3 is in 10.0.0.0/8' }],
      },
      {
        policyId: expect.any(String),
        name: 'x.org',
        decision: 'allow',
        precedence: 3,
        phase: 'identity',
        result: 'matched',
        include: [{ rule: 'email_domain', matched: true, reason: 'email domain x.org is x.org' }],
        require: [],
        exclude: [],
      },
      {
        policyId: expect.any(String),
        name: 'everyone',
        decision: 'allow',
        precedence: 4,
        phase: 'identity',
        result: 'skipped',
        reason: 'not evaluated: an earlier policy decided',
        include: [],
        require: [],
        exclude: [],
      },
    ]);
  });

  it('gives the same decision with and without the trace', () => {
    for (const context of [
      bob,
      { ...bob, clientIp: '192.0.2.1' },
      { ...bob, identity: { email: 'a@example.com' } },
      { now: NOW },
    ]) {
      const plain = evaluate(app, context);
      const traced = evaluate(app, context, { trace: true });
      expect(traced.decision).toBe(plain.decision);
      expect(traced.policy).toBe(plain.policy);
    }
  });

  it('never builds an explanation when tracing is off', () => {
    const poisoned = compilePolicies(
      [
        policy('allow', [{ email: { email: 'alice@x.org' } }, { group: { id: STAFF } }], {
          require: [{ geo: { country_code: 'DE' } }],
        }),
      ],
      { groups },
    );
    const poison = (body: CompiledBody) => {
      for (const matcher of [...body.include, ...body.require, ...body.exclude]) {
        (matcher as { explain: unknown }).explain = () => {
          throw new Error('explain called on the hot path');
        };
        if (matcher.group) poison(matcher.group);
      }
    };
    for (const compiled of poisoned.phases.identity) poison(compiled.body);
    expect(evaluate(poisoned, { ...bob, identity: { email: 'carol@example.com' } }).decision).toBe('allow');
    expect(evaluate(poisoned, bob).decision).toBe('deny');
    expect(() => evaluate(poisoned, bob, { trace: true })).toThrow('explain called');
  });

  it('says why facts are missing', () => {
    const facts = compilePolicies([
      policy('non_identity', [
        { ip: { ip: '10.0.0.0/8' } },
        { geo: { country_code: 'US' } },
        { certificate: {} },
        { service_token: { token_id: uuid(1) } },
        { linked_app_token: { app_uid: uuid(2) } },
      ]),
    ]);
    const reasons = evaluate(
      facts,
      { now: NOW, clientIp: 'garbage' },
      { trace: true },
    ).trace?.[0]?.include.map((rule) => rule.reason);
    expect(reasons).toEqual([
      'client IP "garbage" is not a valid address',
      'the request has no country',
      'no valid client certificate',
      'the request has no valid service token',
      'the request has no valid linked app token',
    ]);
  });

  it('explains external evaluation verdicts', () => {
    const url = 'https://eval.example.com/';
    const external = compilePolicies([
      policy('allow', [
        { external_evaluation: { evaluate_url: url, keys_url: 'https://eval.example.com/keys' } },
      ]),
    ]);
    const reason = (
      verdicts?: ReadonlyMap<string, { success: boolean; expiresAt: number; detail?: string }>,
    ) =>
      evaluate(external, { now: NOW, identity: {}, externalEvaluations: verdicts }, { trace: true })
        .trace?.[0]?.include[0]?.reason;
    expect(reason()).toBe(`no result from ${url} (fails closed)`);
    expect(
      reason(new Map([[url, { success: false, expiresAt: NOW + 1, detail: 'no answer within 5000 ms' }]])),
    ).toBe(`${url} did not answer success: no answer within 5000 ms`);
    expect(reason(new Map([[url, { success: true, expiresAt: NOW }]]))).toBe(
      `the result from ${url} expired at 2026-01-01T00:00:00.000Z`,
    );
    expect(reason(new Map([[url, { success: true, expiresAt: NOW + 1 }]]))).toBe(`${url} answered success`);
  });
});
