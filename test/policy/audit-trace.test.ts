// The compact explanation the access-request log keeps: which policy decided, and for each
// evaluated policy the one rule that settled it; bounded whatever the app holds.
import { describe, expect, it } from 'vitest';
import { MAX_AUDIT_TEXT } from '../../src/policy/audit-trace.ts';
import {
  auditTrace,
  compilePolicies,
  evaluate,
  MAX_AUDIT_STEPS,
  type RequestContext,
} from '../../src/policy/index.ts';
import { NOW, policy } from './fixtures.ts';

const alice: RequestContext = {
  now: NOW,
  identity: { email: 'alice@example.com' },
  clientIp: '2001:db8::7',
  country: 'de',
};

describe('auditTrace', () => {
  it('names the deciding policy and the include rule that matched it', () => {
    const staff = policy('allow', [
      { email: { email: 'bob@example.com' } },
      { email_domain: { domain: 'example.com' } },
    ]);
    const app = compilePolicies([staff]);
    const trace = auditTrace(evaluate(app, alice, { trace: true }));
    expect(trace).toEqual({
      decision: 'allow',
      policy_id: staff.id,
      omitted: 0,
      steps: [
        {
          policy_id: staff.id,
          name: staff.name,
          decision: 'allow',
          matched: true,
          rule: 'include[1]',
          reason: expect.stringMatching(/^email_domain: /),
        },
      ],
    });
  });

  it('says why each policy failed before the default deny: include, require, exclude', () => {
    const noInclude = policy('allow', [{ email: { email: 'bob@example.com' } }]);
    const failedRequire = policy('allow', [{ everyone: {} }], {
      require: [{ everyone: {} }, { geo: { country_code: 'FR' } }],
    });
    const excluded = policy('allow', [{ everyone: {} }], { exclude: [{ ip: { ip: '2001:db8::/64' } }] });
    const app = compilePolicies([noInclude, failedRequire, excluded]);
    const trace = auditTrace(evaluate(app, alice, { trace: true }))!;
    expect(trace.decision).toBe('deny');
    expect(trace.policy_id).toBeNull();
    expect(trace.steps.map((step) => [step.policy_id, step.matched, step.rule])).toEqual([
      [noInclude.id, false, 'include'],
      [failedRequire.id, false, 'require[1]'],
      [excluded.id, false, 'exclude[0]'],
    ]);
    expect(trace.steps[0]!.reason).toMatch(/^no include rule matched; include\[0\] email: /);
    expect(trace.steps[1]!.reason).toMatch(/^geo: .*DE/);
    expect(trace.steps[2]!.reason).toMatch(/^ip: /);
  });

  it('leaves out policies that were not evaluated (an earlier one decided)', () => {
    const bypass = policy('bypass', [{ ip: { ip: '2001:db8::/32' } }]);
    const later = policy('allow', [{ everyone: {} }]);
    const trace = auditTrace(evaluate(compilePolicies([later, bypass]), alice, { trace: true }))!;
    expect(trace).toMatchObject({ decision: 'bypass', policy_id: bypass.id, omitted: 0 });
    expect(trace.steps.map((step) => step.policy_id)).toEqual([bypass.id]);
  });

  it('is bounded: the newest steps are kept and long names and reasons are clipped', () => {
    const many = Array.from({ length: 60 }, (_, index) =>
      policy('allow', [{ email: { email: `user${index}@example.com` } }], {
        name: `${'n'.repeat(340)}${index}`,
      }),
    );
    const decider = policy('deny', [{ email_domain: { domain: 'example.com' } }]);
    const trace = auditTrace(evaluate(compilePolicies([...many, decider]), alice, { trace: true }))!;
    expect(trace.steps).toHaveLength(MAX_AUDIT_STEPS);
    expect(trace.omitted).toBe(61 - MAX_AUDIT_STEPS);
    expect(trace.steps.at(-1)).toMatchObject({ policy_id: decider.id, matched: true, decision: 'deny' });
    for (const step of trace.steps) {
      expect(step.name.length).toBeLessThanOrEqual(MAX_AUDIT_TEXT);
      expect(step.reason.length).toBeLessThanOrEqual(MAX_AUDIT_TEXT);
    }
    expect(JSON.stringify(trace).length).toBeLessThan(8 * 1024);
  });

  it('is null for an untraced decision (the hot path builds no explanation)', () => {
    const app = compilePolicies([policy('allow', [{ everyone: {} }])]);
    expect(auditTrace(evaluate(app, alice))).toBeNull();
  });
});
