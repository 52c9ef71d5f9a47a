// Evaluation order across policies [spec §3.3]: Bypass and Service Auth first, then Allow and
// Block, each by precedence; first match decides; default deny.
import { describe, expect, it } from 'vitest';
import { compilePolicies, evaluate, evaluatePhase, type RequestContext } from '../../src/policy/index.ts';
import { APP_MCP, IDP_OTP, NOW, policy } from './fixtures.ts';

const alice: RequestContext = {
  now: NOW,
  identity: { email: 'alice@example.com', idp: { id: IDP_OTP, type: 'onetimepin' } },
  clientIp: '192.0.2.10',
};

describe('the documented example', () => {
  // "Allow A, Block B, Service Auth C, Bypass D, Allow E ... will execute in this order:
  // Service Auth C > Bypass D > Allow A > Block B > Allow E" [D: access-controls/policies/index.mdx]
  const app = compilePolicies([
    policy('allow', [{ email: { email: 'a@example.com' } }], { name: 'A', precedence: 1 }),
    policy('deny', [{ email: { email: 'b@example.com' } }], { name: 'B', precedence: 2 }),
    policy('non_identity', [{ ip: { ip: '10.0.0.0/8' } }], { name: 'C', precedence: 3 }),
    policy('bypass', [{ ip: { ip: '10.0.0.0/8' } }], { name: 'D', precedence: 4 }),
    policy('allow', [{ email: { email: 'e@example.com' } }], { name: 'E', precedence: 5 }),
  ]);

  it('evaluates C, D, A, B, E', () => {
    const result = evaluate(app, alice, { trace: true });
    expect(result.trace?.map((entry) => entry.name)).toEqual(['C', 'D', 'A', 'B', 'E']);
    expect(result.trace?.every((entry) => entry.result === 'not_matched')).toBe(true);
    expect(result).toMatchObject({ decision: 'deny', policy: null });
  });

  it('lists the policies in that order', () => {
    expect(app.policies.map((info) => [info.name, info.phase])).toEqual([
      ['C', 'non_identity'],
      ['D', 'non_identity'],
      ['A', 'identity'],
      ['B', 'identity'],
      ['E', 'identity'],
    ]);
  });

  it('lets E decide when only E matches, after B did not', () => {
    const result = evaluate(app, { ...alice, identity: { email: 'e@example.com' } });
    expect(result.policy?.name).toBe('E');
  });
});

describe('first match wins', () => {
  it('a Bypass of any precedence beats a matching Allow', () => {
    const app = compilePolicies([
      policy('allow', [{ everyone: {} }], { precedence: 1 }),
      policy('bypass', [{ everyone: {} }], { precedence: 99 }),
    ]);
    expect(evaluate(app, alice).decision).toBe('bypass');
  });

  it('a Service Auth of any precedence beats a matching Block', () => {
    const app = compilePolicies([
      policy('deny', [{ everyone: {} }], { precedence: 1 }),
      policy('non_identity', [{ linked_app_token: { app_uid: APP_MCP } }], { precedence: 2 }),
    ]);
    expect(evaluate(app, { ...alice, linkedAppUid: APP_MCP }).decision).toBe('non_identity');
    expect(evaluate(app, alice).decision).toBe('deny');
  });

  it('Block before Allow when its precedence is lower, and the reverse', () => {
    const block = (precedence: number) => policy('deny', [{ everyone: {} }], { precedence });
    const allow = (precedence: number) =>
      policy('allow', [{ email_domain: { domain: 'example.com' } }], { precedence });
    expect(evaluate(compilePolicies([block(1), allow(2)]), alice).decision).toBe('deny');
    expect(evaluate(compilePolicies([block(2), allow(1)]), alice).decision).toBe('allow');
  });

  it('precedence orders, not array position', () => {
    const app = compilePolicies([
      policy('allow', [{ everyone: {} }], { name: 'second', precedence: 20 }),
      policy('allow', [{ everyone: {} }], { name: 'first', precedence: 10 }),
    ]);
    expect(evaluate(app, alice).policy?.name).toBe('first');
  });
});

describe('default deny and identity', () => {
  it('denies with no policy when nothing matches', () => {
    const app = compilePolicies([policy('allow', [{ email: { email: 'bob@example.com' } }])]);
    expect(evaluate(app, alice)).toEqual({ decision: 'deny', policy: null, trace: null });
  });

  it('denies an app without policies', () => {
    expect(evaluate(compilePolicies([]), alice)).toMatchObject({ decision: 'deny', policy: null });
  });

  it('never lets Allow match without an identity, even `everyone`', () => {
    const app = compilePolicies([policy('allow', [{ everyone: {} }])]);
    const result = evaluate(app, { now: NOW, clientIp: '192.0.2.1' }, { trace: true });
    expect(result.decision).toBe('deny');
    expect(result.trace?.[0]).toMatchObject({ result: 'skipped', reason: expect.stringContaining('login') });
  });

  it('lets Bypass and Service Auth match without an identity', () => {
    const app = compilePolicies([
      policy('bypass', [{ ip: { ip: '192.0.2.0/24' } }]),
      policy('non_identity', [{ any_valid_service_token: {} }]),
    ]);
    expect(evaluate(app, { now: NOW, clientIp: '192.0.2.1' }).decision).toBe('bypass');
    expect(evaluate(app, { now: NOW, serviceTokenId: 'x' }).decision).toBe('non_identity');
  });
});

describe('evaluatePhase', () => {
  const app = compilePolicies([
    policy('non_identity', [{ any_valid_service_token: {} }], { name: 'service', precedence: 5 }),
    policy('deny', [{ geo: { country_code: 'KP' } }], { name: 'block', precedence: 1 }),
    policy('allow', [{ email_domain: { domain: 'example.com' } }], { name: 'staff', precedence: 2 }),
  ]);

  it('runs only Bypass and Service Auth in the non_identity phase', () => {
    expect(evaluatePhase(app, 'non_identity', { now: NOW, serviceTokenId: 'x' }).policy?.name).toBe(
      'service',
    );
    expect(evaluatePhase(app, 'non_identity', alice)).toEqual({
      decision: 'no_match',
      policy: null,
      trace: null,
    });
  });

  it('runs only Allow and Block in the identity phase', () => {
    expect(evaluatePhase(app, 'identity', { ...alice, serviceTokenId: 'x' }).policy?.name).toBe('staff');
    expect(evaluatePhase(app, 'identity', { ...alice, country: 'KP' }).policy?.name).toBe('block');
    expect(evaluatePhase(app, 'identity', { now: NOW, serviceTokenId: 'x' }).decision).toBe('no_match');
  });

  it('agrees with evaluate', () => {
    for (const context of [
      alice,
      { ...alice, country: 'KP' },
      { now: NOW, serviceTokenId: 'x' },
      { now: NOW },
    ]) {
      const first = evaluatePhase(app, 'non_identity', context);
      const second = evaluatePhase(app, 'identity', context);
      const combined = first.policy ?? second.policy;
      expect(evaluate(app, context).policy).toBe(combined);
    }
  });
});

describe('results', () => {
  it('carries the policy session duration', () => {
    const app = compilePolicies([policy('allow', [{ everyone: {} }], { session_duration: '2h45m' })]);
    expect(evaluate(app, alice).policy).toMatchObject({
      sessionDuration: '2h45m',
      sessionDurationMs: 9_900_000,
    });
  });

  it('reuses one frozen result per policy when not tracing', () => {
    const app = compilePolicies([policy('allow', [{ everyone: {} }])]);
    const first = evaluate(app, alice);
    expect(evaluate(app, alice)).toBe(first);
    expect(Object.isFrozen(first)).toBe(true);
    expect(first.trace).toBeNull();
  });
});
