// Validation for the management API: refusals with reasons, and the cross-object checks.
import { describe, expect, it } from 'vitest';
import {
  attachmentProblems,
  decisionProblems,
  type GroupDefinition,
  groupGraphProblems,
  groupInputSchema,
  linkedAppProblems,
  parseGoDuration,
  policyInputSchema,
  precedenceProblems,
  problemsFromZod,
  referenceProblems,
  ruleListSchema,
  ruleSchema,
  UNSUPPORTED_SELECTORS,
} from '../../src/policy/index.ts';
import { APP_MCP, APP_OTHER, IDP_GITHUB, TOKEN_CI, uuid } from './fixtures.ts';

function problems(
  schema: { safeParse(value: unknown): { success: boolean; error?: unknown } },
  value: unknown,
) {
  const result = schema.safeParse(value) as ReturnType<typeof ruleSchema.safeParse>;
  return result.success ? [] : problemsFromZod(result.error);
}

const linked = { linked_app_token: { app_uid: APP_MCP } };

describe('ruleSchema', () => {
  it.each([
    { email: { email: 'alice@example.com' } },
    { email_domain: { domain: 'example.com' } },
    { email_list: { id: uuid(1) } },
    { everyone: {} },
    { ip: { ip: '237.84.2.178/24' } },
    { ip: { ip: '2001:db8::/32' } },
    { ip: { ip: '192.0.2.1' } },
    { ip_list: { id: uuid(1) } },
    { group: { id: uuid(1) } },
    { login_method: { id: uuid(1) } },
    { auth_method: { auth_method: 'mfa' } },
    { oidc: { claim_name: 'groups', claim_value: 'admins', identity_provider_id: uuid(1) } },
    { 'github-organization': { name: 'acme', identity_provider_id: IDP_GITHUB } },
    { 'github-organization': { name: 'acme', team: 'platform', identity_provider_id: IDP_GITHUB } },
    { geo: { country_code: 'PT' } },
    { certificate: {} },
    { common_name: { common_name: 'ci.example.com' } },
    { service_token: { token_id: TOKEN_CI } },
    { any_valid_service_token: {} },
    linked,
    {
      external_evaluation: {
        evaluate_url: 'https://eval.example.com',
        keys_url: 'https://eval.example.com/keys',
      },
    },
    {
      external_evaluation: { evaluate_url: 'http://127.0.0.1:8787/', keys_url: 'http://localhost:8787/keys' },
    },
    { external_evaluation: { evaluate_url: 'http://[::1]:8787/', keys_url: 'http://127.8.9.10/keys' } },
  ])('accepts %j unchanged', (rule) => {
    expect(ruleSchema.parse(rule)).toEqual(rule);
  });

  it.each(Object.keys(UNSUPPORTED_SELECTORS))('refuses %s, saying why', (selector) => {
    expect(problems(ruleSchema, { [selector]: { id: 'x' } })).toEqual([
      {
        path: `/${selector}`,
        message: `selector "${selector}" is not supported by Gatehouse: ${UNSUPPORTED_SELECTORS[selector]}`,
      },
    ]);
  });

  it.each([
    [{ bogus: {} }, '/bogus', 'unknown selector "bogus"'],
    [{}, '', 'a rule has exactly one selector key, got 0'],
    [
      { everyone: {}, certificate: {} },
      '',
      'a rule has exactly one selector key, got 2 (everyone, certificate)',
    ],
    ['everyone', '', 'a rule is an object with one selector key, e.g. {"everyone":{}}'],
    [[{ everyone: {} }], '', 'a rule is an object with one selector key, e.g. {"everyone":{}}'],
    [{ everyone: { all: true } }, '/everyone', 'expected an empty object {}'],
    [
      { email: { email: 'not-an-email' } },
      '/email/email',
      'expected an email address such as alice@example.com',
    ],
    [
      { email_domain: { domain: '@example.com' } },
      '/email_domain/domain',
      'expected a domain such as example.com, without "@"',
    ],
    [{ email_domain: { domain: '' } }, '/email_domain/domain', expect.any(String)],
    [{ ip: { ip: '10.0.0.0/33' } }, '/ip/ip', expect.stringContaining('CIDR')],
    [{ ip: { ip: '::/129' } }, '/ip/ip', expect.stringContaining('CIDR')],
    [{ ip: { ip: 'fe80::1%eth0' } }, '/ip/ip', expect.stringContaining('CIDR')],
    [{ ip: { ip: '10.0.0.0/8', note: 'x' } }, '/ip', expect.stringContaining('note')],
    [{ geo: { country_code: 'PRT' } }, '/geo/country_code', expect.stringContaining('alpha-2')],
    [{ group: { id: 'engineering' } }, '/group/id', 'expected a UUID'],
    [{ linked_app_token: { app_uid: 'aud-64-hex' } }, '/linked_app_token/app_uid', 'expected a UUID'],
    [
      { oidc: { claim_name: 'groups', claim_value: '', identity_provider_id: uuid(1) } },
      '/oidc/claim_value',
      'must not be empty',
    ],
    [{ common_name: { common_name: '' } }, '/common_name/common_name', 'must not be empty'],
    [
      {
        external_evaluation: {
          evaluate_url: 'http://eval.example.com',
          keys_url: 'https://eval.example.com/k',
        },
      },
      '/external_evaluation/evaluate_url',
      expect.stringContaining('https://'),
    ],
    [
      {
        external_evaluation: {
          evaluate_url: 'https://u:p@eval.example.com',
          keys_url: 'https://eval.example.com/k',
        },
      },
      '/external_evaluation/evaluate_url',
      expect.stringContaining('https://'),
    ],
  ])('refuses %j', (rule, path, message) => {
    expect(problems(ruleSchema, rule)).toEqual([{ path, message }]);
  });

  it('reports a misnamed value field as missing and unknown', () => {
    expect(problems(ruleSchema, { email: { address: 'a@example.com' } })).toEqual([
      { path: '/email/email', message: 'Invalid input: expected string, received undefined' },
      { path: '/email', message: 'Unrecognized key: "address"' },
    ]);
  });

  it('refuses more than 50 rules in a list', () => {
    expect(
      problems(
        ruleListSchema,
        Array.from({ length: 51 }, () => ({ everyone: {} })),
      ),
    ).toEqual([{ path: '', message: 'at most 50 rules per include, require or exclude' }]);
  });
});

describe('policyInputSchema', () => {
  const base = { name: 'Allow MCP server', decision: 'non_identity', include: [linked] };

  it('accepts the documented linked-app policy and echoes it', () => {
    // spec §5.5: the body of POST /access/policies in the guide
    expect(policyInputSchema.parse(base)).toEqual({ ...base, exclude: [], require: [] });
  });

  it('strips read-only and unknown fields', () => {
    const parsed = policyInputSchema.parse({
      ...base,
      id: 'x',
      created_at: 'y',
      reusable: true,
      app_count: 2,
    });
    expect(Object.keys(parsed).sort()).toEqual(['decision', 'exclude', 'include', 'name', 'require']);
  });

  it.each(['non_identity', 'bypass'])('accepts linked_app_token in %s policies', (decision) => {
    expect(problems(policyInputSchema, { ...base, decision, require: [linked] })).toEqual([]);
  });

  it.each(['allow', 'deny'])('refuses linked_app_token in %s policies', (decision) => {
    expect(problems(policyInputSchema, { ...base, decision })).toEqual([
      {
        path: '/include/0',
        message: `"linked_app_token" cannot be used in ${decision} policies: linked_app_token is only compatible with non_identity and bypass decisions`,
      },
    ]);
  });

  it.each(['bypass', 'non_identity'])('refuses identity selectors in %s policies', (decision) => {
    const found = problems(policyInputSchema, {
      name: 'p',
      decision,
      include: [{ everyone: {} }],
      require: [{ email_domain: { domain: 'example.com' } }],
    });
    expect(found).toEqual([
      {
        path: '/require/0',
        message: expect.stringContaining(
          `${decision} policies cannot use the identity selector "email_domain"`,
        ),
      },
    ]);
  });

  it.each(['allow', 'deny', 'bypass'])('refuses service token rules in %s policies', (decision) => {
    expect(
      problems(policyInputSchema, { name: 'p', decision, include: [{ any_valid_service_token: {} }] }),
    ).toEqual([
      {
        path: '/include/0',
        message: `"any_valid_service_token" cannot be used in ${decision} policies: service token rules require the Service Auth (non_identity) action`,
      },
    ]);
  });

  it('requires an include rule', () => {
    expect(problems(policyInputSchema, { name: 'p', decision: 'allow', include: [] })).toEqual([
      { path: '/include', message: 'at least one include rule is required' },
    ]);
  });

  it('refuses excluding everyone, which could never match', () => {
    expect(
      problems(policyInputSchema, {
        name: 'p',
        decision: 'allow',
        include: [{ everyone: {} }],
        exclude: [{ everyone: {} }],
      }),
    ).toEqual([{ path: '/exclude/0', message: expect.stringContaining('can never match') }]);
  });

  it.each([
    ['24h', true],
    ['2h45m', true],
    ['300ms', true],
    ['730h', true],
    ['0s', true],
    ['731h', false],
    ['1d', false],
    ['-1h', false],
    ['', false],
    ['24', false],
  ])('session_duration %j valid: %s', (session_duration, valid) => {
    expect(problems(policyInputSchema, { ...base, session_duration }).length === 0).toBe(valid);
  });

  it('accepts a null session_duration', () => {
    expect(problems(policyInputSchema, { ...base, session_duration: null })).toEqual([]);
  });

  it.each(['approval_required', 'purpose_justification_required', 'isolation_required'])(
    'refuses %s: true, accepts false',
    (field) => {
      expect(problems(policyInputSchema, { ...base, [field]: true })).toEqual([
        {
          path: `/${field}`,
          message: expect.stringContaining('not supported by Gatehouse; it would not be enforced'),
        },
      ]);
      expect(problems(policyInputSchema, { ...base, [field]: false })).toEqual([]);
    },
  );

  it('refuses mfa_config that asks for MFA, accepts it disabled or empty', () => {
    expect(
      problems(policyInputSchema, { ...base, mfa_config: { allowed_authenticators: ['totp'] } }),
    ).toEqual([
      {
        path: '/mfa_config',
        message: expect.stringContaining('independent MFA (mfa_config) is not supported'),
      },
    ]);
    for (const mfa_config of [null, {}, { allowed_authenticators: ['totp'], mfa_disabled: true }]) {
      expect(problems(policyInputSchema, { ...base, mfa_config })).toEqual([]);
    }
  });

  it('validates name, decision and precedence', () => {
    expect(
      problems(policyInputSchema, {
        name: '  ',
        decision: 'block',
        include: [{ everyone: {} }],
        precedence: 1.5,
      }).map((problem) => problem.path),
    ).toEqual(['/name', '/decision', '/precedence']);
  });
});

describe('groupInputSchema', () => {
  it('accepts identity and request selectors alike', () => {
    const input = {
      name: 'Staff',
      include: [{ email_domain: { domain: 'example.com' } }, linked],
      is_default: false,
    };
    expect(groupInputSchema.parse(input)).toEqual({
      name: 'Staff',
      include: input.include,
      exclude: [],
      require: [],
    });
  });

  it('refuses an empty include and excluding everyone', () => {
    expect(problems(groupInputSchema, { name: 'G', include: [] })).toEqual([
      { path: '/include', message: 'at least one include rule is required' },
    ]);
    expect(
      problems(groupInputSchema, { name: 'G', include: [{ everyone: {} }], exclude: [{ everyone: {} }] }),
    ).toEqual([{ path: '/exclude/0', message: expect.stringContaining('can never match') }]);
  });
});

describe('cross-object checks', () => {
  const linkedPolicy = { decision: 'non_identity' as const, include: [linked], precedence: 1 };
  const allowPolicy = { decision: 'allow' as const, include: [{ everyone: {} }], precedence: 2 };

  it('attaches linked_app_token policies only to self_hosted apps', () => {
    expect(attachmentProblems('self_hosted', [linkedPolicy, allowPolicy])).toEqual([]);
    expect(attachmentProblems('saas', [allowPolicy, linkedPolicy], undefined, '/policies')).toEqual([
      {
        path: '/policies/1/include/0',
        message:
          'policies with "linked_app_token" can only be attached to self_hosted applications, not saas',
      },
    ]);
  });

  it('finds linked_app_token inside groups when attaching', () => {
    const groups = new Map<string, GroupDefinition>([
      [uuid(1), { id: uuid(1), name: 'Linked', include: [linked] }],
    ]);
    const viaGroup = { decision: 'non_identity' as const, include: [{ group: { id: uuid(1) } }] };
    expect(attachmentProblems('mcp', [viaGroup], groups)[0]?.message).toBe(
      'policies with "linked_app_token" (via group Linked) can only be attached to self_hosted applications, not mcp',
    );
  });

  it('checks precedences and the policy count when attaching', () => {
    expect(precedenceProblems([{ precedence: 1 }, {}, { precedence: 2 }, { precedence: 1 }])).toEqual([
      {
        path: '/3/precedence',
        message: 'precedence 1 is already used by the policy at /0; policy precedences must be unique',
      },
    ]);
    const many = Array.from({ length: 501 }, () => allowPolicy).map((policy, i) => ({
      ...policy,
      precedence: i,
    }));
    expect(attachmentProblems('self_hosted', many)).toEqual([
      { path: '', message: 'an application can have at most 500 policies, got 501' },
    ]);
  });

  it('requires app_uid to name a linkable app', () => {
    expect(linkedAppProblems(linkedPolicy, new Set([APP_MCP]))).toEqual([]);
    expect(linkedAppProblems(linkedPolicy, new Set([APP_OTHER]))).toEqual([
      {
        path: '/include/0',
        message: `"linked_app_token" names app ${APP_MCP}, which is not a self_hosted or OIDC saas application of this account`,
      },
    ]);
  });

  it('checks decisions through groups', () => {
    const groups = new Map<string, GroupDefinition>([
      [uuid(1), { id: uuid(1), name: 'Admins', include: [{ email: { email: 'root@example.com' } }] }],
    ]);
    const bypass = { decision: 'bypass' as const, include: [{ group: { id: uuid(1) } }] };
    expect(decisionProblems(bypass)).toEqual([]);
    expect(decisionProblems(bypass, groups)).toEqual([
      {
        path: '/include/0',
        message:
          'bypass policies cannot use the identity selector "email" (via group Admins): Bypass does not support identity-based selectors',
      },
    ]);
  });

  it('checks references to groups and lists', () => {
    const body = { include: [{ group: { id: uuid(1) } }, { email_list: { id: uuid(2) } }] };
    expect(referenceProblems(body, { groups: new Map(), lists: new Map() })).toEqual([
      { path: '/include/0', message: `group ${uuid(1)} does not exist` },
      { path: '/include/1', message: `list ${uuid(2)} does not exist` },
    ]);
  });

  it('checks the group graph', () => {
    const a: GroupDefinition = { id: uuid(1), name: 'A', include: [{ group: { id: uuid(2) } }] };
    const b: GroupDefinition = { id: uuid(2), name: 'B', include: [{ group: { id: uuid(1) } }] };
    expect(
      groupGraphProblems(
        new Map([
          [a.id, a],
          [b.id, b],
        ]),
      ),
    ).toEqual([{ path: `/groups/${uuid(2)}/include/0`, message: 'groups form a cycle: "A" > "B" > "A"' }]);
  });
});

describe('parseGoDuration', () => {
  it.each([
    ['0', 0],
    ['24h', 86_400_000],
    ['2h45m', 9_900_000],
    ['1.5s', 1500],
    ['300ms', 300],
    ['1500us', 1.5],
    ['1500µs', 1.5],
    ['1000000ns', 1],
    ['1h1m1s1ms', 3_661_001],
    ['.5h', 1_800_000],
  ])('%s is %f ms', (text, ms) => {
    expect(parseGoDuration(text)).toBe(ms);
  });

  it.each(['', '1', '1d', 'h', '-1h', '+1h', '1h ', '1 h', '1.2.3s', '1hh'])('refuses %j', (text) => {
    expect(parseGoDuration(text)).toBeNull();
  });
});
