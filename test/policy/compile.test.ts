// compilePolicies refuses what cannot be evaluated safely, listing every problem.
import { describe, expect, it } from 'vitest';
import {
  type CompileOptions,
  compilePolicies,
  evaluate,
  type GroupDefinition,
  limits,
  PolicyCompileError,
  type PolicyDefinition,
  type PolicyProblem,
  type Rule,
} from '../../src/policy/index.ts';
import { APP_MCP, NOW, policy, uuid } from './fixtures.ts';

function problemsOf(policies: PolicyDefinition[], options: CompileOptions = {}): PolicyProblem[] {
  try {
    compilePolicies(policies, options);
  } catch (error) {
    expect(error).toBeInstanceOf(PolicyCompileError);
    return [...(error as PolicyCompileError).problems];
  }
  throw new Error('expected a PolicyCompileError');
}

const group = (n: number, include: Rule[], extra: Partial<GroupDefinition> = {}): GroupDefinition => ({
  id: uuid(0x100 + n),
  name: `G${n}`,
  include,
  ...extra,
});
const ref = (n: number): Rule => ({ group: { id: uuid(0x100 + n) } });

/** G1 → G2 → … → Gn, Gn including everyone. */
function chain(length: number): GroupDefinition[] {
  return Array.from({ length }, (_, i) => group(i + 1, i + 1 === length ? [{ everyone: {} }] : [ref(i + 2)]));
}

describe('groups', () => {
  it('refuses a cycle', () => {
    const groups = [group(1, [ref(2)]), group(2, [{ everyone: {} }], { require: [ref(1)] })];
    expect(problemsOf([policy('allow', [ref(1)])], { groups })).toEqual([
      { path: `/groups/${uuid(0x102)}/require/0`, message: 'groups form a cycle: "G1" > "G2" > "G1"' },
    ]);
  });

  it('refuses a group naming itself', () => {
    const groups = [group(1, [{ everyone: {} }], { exclude: [ref(1)] })];
    expect(problemsOf([policy('allow', [ref(1)])], { groups })[0]?.message).toBe(
      'groups form a cycle: "G1" > "G1"',
    );
  });

  it(`accepts nesting ${limits.MAX_GROUP_DEPTH} deep and refuses one more`, () => {
    const ok = compilePolicies([policy('allow', [ref(1)])], { groups: chain(limits.MAX_GROUP_DEPTH) });
    expect(evaluate(ok, { now: NOW, identity: {} }).decision).toBe('allow');
    expect(problemsOf([policy('allow', [ref(1)])], { groups: chain(limits.MAX_GROUP_DEPTH + 1) })).toEqual([
      { path: `/groups/${uuid(0x101)}`, message: 'group "G1" nests groups 9 deep; at most 8 are allowed' },
    ]);
  });

  it('refuses unknown groups, in policies and in groups', () => {
    const problems = problemsOf([policy('allow', [ref(1), ref(7)])], { groups: [group(1, [ref(8)])] });
    expect(problems).toEqual([
      { path: '/policies/0/include/1', message: `group ${uuid(0x107)} does not exist` },
      { path: `/groups/${uuid(0x101)}/include/0`, message: `group ${uuid(0x108)} does not exist` },
    ]);
  });

  it('looks through groups for rules the decision cannot use', () => {
    const groups = [group(1, [ref(2)]), group(2, [{ email_domain: { domain: 'example.com' } }])];
    expect(problemsOf([policy('bypass', [ref(1)])], { groups })).toEqual([
      {
        path: '/policies/0/include/0',
        message:
          'bypass policies cannot use the identity selector "email_domain" (via group G1 > G2): Bypass does not support identity-based selectors',
      },
    ]);
    const linked = [group(3, [{ linked_app_token: { app_uid: APP_MCP } }])];
    expect(problemsOf([policy('allow', [ref(3)])], { groups: linked })[0]?.message).toMatch(
      /"linked_app_token" \(via group G3\) cannot be used in allow policies/,
    );
  });

  it('accepts request-only groups in Bypass policies', () => {
    const groups = [group(1, [{ ip: { ip: '192.0.2.0/24' } }])];
    const app = compilePolicies([policy('bypass', [ref(1)])], { groups });
    expect(evaluate(app, { now: NOW, clientIp: '192.0.2.3' }).decision).toBe('bypass');
  });

  it('ignores broken groups the app does not use', () => {
    const broken = group(9, [{ okta: { name: 'x' } } as unknown as Rule], { exclude: [ref(9)] });
    expect(() => compilePolicies([policy('allow', [{ everyone: {} }])], { groups: [broken] })).not.toThrow();
  });

  it('re-validates the groups it uses', () => {
    const broken = group(1, [{ ip: { ip: '10.0.0.0/33' } }]);
    expect(problemsOf([policy('allow', [ref(1)])], { groups: [broken] })).toEqual([
      { path: `/groups/${uuid(0x101)}/include/0/ip/ip`, message: expect.stringContaining('CIDR') },
    ]);
  });
});

describe('lists', () => {
  const emails = { id: uuid(0x201), name: 'Emails', type: 'EMAIL' as const, items: ['a@example.com'] };
  const ips = { id: uuid(0x202), name: 'IPs', type: 'IP' as const, items: ['10.0.0.0/8'] };

  it('refuses unknown lists and lists of the wrong type', () => {
    const problems = problemsOf(
      [
        policy('allow', [
          { email_list: { id: ips.id } },
          { ip_list: { id: emails.id } },
          { ip_list: { id: uuid(0x2ff) } },
        ]),
      ],
      { lists: [emails, ips] },
    );
    expect(problems).toEqual([
      {
        path: '/policies/0/include/0',
        message: `"email_list" needs a list of type EMAIL, but list ${ips.id} has type IP`,
      },
      {
        path: '/policies/0/include/1',
        message: `"ip_list" needs a list of type IP, but list ${emails.id} has type EMAIL`,
      },
      { path: '/policies/0/include/2', message: `list ${uuid(0x2ff)} does not exist` },
    ]);
  });

  it('refuses invalid list items', () => {
    const bad = { ...ips, items: ['10.0.0.0/8', '10.0.0.0/40', 'example.com'] };
    expect(problemsOf([policy('non_identity', [{ ip_list: { id: bad.id } }])], { lists: [bad] })).toEqual([
      { path: `/lists/${bad.id}/items/1`, message: 'expected an IPv4 or IPv6 address or CIDR block' },
      { path: `/lists/${bad.id}/items/2`, message: 'expected an IPv4 or IPv6 address or CIDR block' },
    ]);
  });

  it(`refuses lists over ${limits.MAX_LIST_ITEMS} items`, () => {
    const big = {
      ...emails,
      items: Array.from({ length: limits.MAX_LIST_ITEMS + 1 }, (_, i) => `u${i}@example.com`),
    };
    expect(
      problemsOf([policy('allow', [{ email_list: { id: big.id } }])], { lists: [big] })[0]?.message,
    ).toBe('at most 10000 items per list');
  });
});

describe('policies', () => {
  it('re-validates rules, whatever their static type says', () => {
    const problems = problemsOf([
      policy('allow', [{ azureAD: { id: 'x', identity_provider_id: 'y' } } as unknown as Rule]),
      policy('non_identity', [{ ip: { ip: '300.0.0.0/8' } }]),
      policy('allow', []),
    ]);
    expect(problems.map((problem) => problem.path)).toEqual([
      '/policies/0/include/0/azureAD',
      '/policies/1/include/0/ip/ip',
      '/policies/2/include',
    ]);
    expect(problems[0]?.message).toMatch(/^selector "azureAD" is not supported by Gatehouse: /);
  });

  it('refuses duplicate precedences (Cloudflare error 12130)', () => {
    expect(
      problemsOf([
        policy('allow', [{ everyone: {} }], { precedence: 1 }),
        policy('deny', [{ everyone: {} }], { precedence: 1 }),
      ]),
    ).toEqual([
      {
        path: '/policies/1/precedence',
        message:
          'precedence 1 is already used by the policy at /policies/0; policy precedences must be unique',
      },
    ]);
  });

  it(`refuses more than ${limits.MAX_POLICIES_PER_APP} policies`, () => {
    const many = Array.from({ length: limits.MAX_POLICIES_PER_APP + 1 }, (_, i) =>
      policy('allow', [{ everyone: {} }], { precedence: i + 1 }),
    );
    expect(problemsOf(many)).toEqual([
      { path: '/policies', message: 'at most 500 policies per application' },
    ]);
  });

  it('refuses one evaluate_url with two keys_url values', () => {
    const url = 'https://eval.example.com/';
    const problems = problemsOf([
      policy('allow', [
        { external_evaluation: { evaluate_url: url, keys_url: 'https://eval.example.com/a' } },
      ]),
      policy('allow', [
        { external_evaluation: { evaluate_url: url, keys_url: 'https://eval.example.com/b' } },
      ]),
    ]);
    expect(problems).toEqual([
      { path: '/policies/1/include/0', message: expect.stringContaining('two keys_url values') },
    ]);
  });

  it('lists every problem at once', () => {
    const problems = problemsOf([
      policy('bypass', [{ email: { email: 'a@example.com' } }], { precedence: 1 }),
      policy('allow', [{ linked_app_token: { app_uid: APP_MCP } }], { precedence: 1 }),
      policy('allow', [{ everyone: {} }], { exclude: [{ everyone: {} }], precedence: 2 }),
    ]);
    expect(problems.map((problem) => problem.path)).toEqual([
      '/policies/0/include/0',
      '/policies/1/include/0',
      '/policies/2/exclude/0',
      '/policies/1/precedence',
    ]);
  });

  it('names the problems in the error message', () => {
    expect(() => compilePolicies([policy('allow', [])])).toThrow(
      'policies do not compile: /policies/0/include: at least one include rule is required',
    );
  });
});

describe('external evaluation targets', () => {
  it('lists each endpoint once, including those inside groups', () => {
    const a = { evaluate_url: 'https://a.example.com/', keys_url: 'https://a.example.com/keys' };
    const b = { evaluate_url: 'https://b.example.com/', keys_url: 'https://b.example.com/keys' };
    const app = compilePolicies(
      [
        policy('allow', [{ external_evaluation: a }]),
        policy('deny', [{ everyone: {} }], { require: [ref(1), { external_evaluation: a }] }),
      ],
      { groups: [group(1, [{ external_evaluation: b }])] },
    );
    expect(app.externalEvaluations).toEqual([
      { evaluateUrl: a.evaluate_url, keysUrl: a.keys_url },
      { evaluateUrl: b.evaluate_url, keysUrl: b.keys_url },
    ]);
  });
});
