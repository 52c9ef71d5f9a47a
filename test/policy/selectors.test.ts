// One row per selector behaviour: the rule, the request, and whether the rule matches.
import { describe, expect, it } from 'vitest';
import type { GroupDefinition, ListDefinition, RequestContext, Rule } from '../../src/policy/index.ts';
import { selectorValueSchemas } from '../../src/policy/schema.ts';
import {
  APP_MCP,
  APP_OTHER,
  IDP_GITHUB,
  IDP_OIDC,
  IDP_OTP,
  NOW,
  ruleMatches,
  TOKEN_CI,
  TOKEN_OTHER,
  uuid,
} from './fixtures.ts';

type Context = Omit<RequestContext, 'now'>;
type Row = [description: string, rule: Rule, context: Context, expected: boolean];

const EVAL_URL = 'https://eval.example.com/check';
const KEYS_URL = 'https://eval.example.com/keys';
const EMAIL_LIST = uuid(0xd1);
const IP_LIST = uuid(0xd2);
const GROUP_STAFF = uuid(0xe1);
const GROUP_OFFICE = uuid(0xe2);
const GROUP_STAFF_IN_OFFICE = uuid(0xe3);

const lists: ListDefinition[] = [
  { id: EMAIL_LIST, name: 'Contractors', type: 'EMAIL', items: ['Carol@Example.com', 'dave@partner.org'] },
  { id: IP_LIST, name: 'Offices', type: 'IP', items: ['192.0.2.0/24', '2001:db8:1::/48', '198.51.100.7'] },
];
const groups: GroupDefinition[] = [
  {
    id: GROUP_STAFF,
    name: 'Staff',
    include: [{ email_domain: { domain: 'example.com' } }],
    exclude: [{ email: { email: 'mallory@example.com' } }],
  },
  { id: GROUP_OFFICE, name: 'Office', include: [{ ip_list: { id: IP_LIST } }] },
  {
    id: GROUP_STAFF_IN_OFFICE,
    name: 'Staff in office',
    include: [{ group: { id: GROUP_STAFF } }],
    require: [{ group: { id: GROUP_OFFICE } }],
  },
];

const alice = (extra: Partial<NonNullable<Context['identity']>> = {}): Context['identity'] => ({
  email: 'alice@example.com',
  idp: { id: IDP_OTP, type: 'onetimepin' },
  ...extra,
});

const rows: Row[] = [
  // email: case-insensitive equality
  ['email equal', { email: { email: 'alice@example.com' } }, { identity: alice() }, true],
  [
    'email differs in case',
    { email: { email: 'Alice@Example.COM' } },
    { identity: alice({ email: 'ALICE@example.com' }) },
    true,
  ],
  ['email other user', { email: { email: 'bob@example.com' } }, { identity: alice() }, false],
  ['email prefix is not equal', { email: { email: 'alice@example.co' } }, { identity: alice() }, false],
  [
    'email without identity email',
    { email: { email: 'alice@example.com' } },
    { identity: { idp: { id: IDP_OTP, type: 'onetimepin' } } },
    false,
  ],

  // email_domain: the part after the last @, exactly
  ['domain equal', { email_domain: { domain: 'example.com' } }, { identity: alice() }, true],
  [
    'domain case-insensitive',
    { email_domain: { domain: 'EXAMPLE.com' } },
    { identity: alice({ email: 'a@Example.COM' }) },
    true,
  ],
  [
    'domain subdomain does not match',
    { email_domain: { domain: 'example.com' } },
    { identity: alice({ email: 'a@dev.example.com' }) },
    false,
  ],
  [
    'domain parent does not match',
    { email_domain: { domain: 'dev.example.com' } },
    { identity: alice() },
    false,
  ],
  [
    'domain suffix trick does not match',
    { email_domain: { domain: 'example.com' } },
    { identity: alice({ email: 'a@evilexample.com' }) },
    false,
  ],
  [
    'domain after the last @',
    { email_domain: { domain: 'example.com' } },
    { identity: alice({ email: '"x@evil.org"@example.com' }) },
    true,
  ],
  [
    'domain of a quoted local part is not the domain',
    { email_domain: { domain: 'evil.org' } },
    { identity: alice({ email: '"x@evil.org"@example.com' }) },
    false,
  ],

  // email_list
  [
    'email list member (case-insensitive)',
    { email_list: { id: EMAIL_LIST } },
    { identity: alice({ email: 'carol@EXAMPLE.com' }) },
    true,
  ],
  ['email list non-member', { email_list: { id: EMAIL_LIST } }, { identity: alice() }, false],

  // everyone
  ['everyone without anything', { everyone: {} }, {}, true],

  // ip: IPv4, IPv6, mapped, edges
  ['ip inside /24', { ip: { ip: '192.0.2.0/24' } }, { clientIp: '192.0.2.77' }, true],
  ['ip first address', { ip: { ip: '192.0.2.0/24' } }, { clientIp: '192.0.2.0' }, true],
  ['ip last address', { ip: { ip: '192.0.2.0/24' } }, { clientIp: '192.0.2.255' }, true],
  ['ip just outside', { ip: { ip: '192.0.2.0/24' } }, { clientIp: '192.0.3.0' }, false],
  ['ip host bits set in the rule', { ip: { ip: '237.84.2.178/24' } }, { clientIp: '237.84.2.1' }, true],
  ['ip /32 exact', { ip: { ip: '203.0.113.9/32' } }, { clientIp: '203.0.113.9' }, true],
  ['ip /32 neighbour', { ip: { ip: '203.0.113.9/32' } }, { clientIp: '203.0.113.10' }, false],
  ['ip bare address', { ip: { ip: '203.0.113.9' } }, { clientIp: '203.0.113.9' }, true],
  ['ip /0 matches any IPv4', { ip: { ip: '0.0.0.0/0' } }, { clientIp: '255.255.255.255' }, true],
  ['ip IPv4 /0 does not match IPv6', { ip: { ip: '0.0.0.0/0' } }, { clientIp: '2001:db8::1' }, false],
  ['ip IPv4-mapped client in IPv4 range', { ip: { ip: '1.2.3.0/24' } }, { clientIp: '::ffff:1.2.3.4' }, true],
  [
    'ip IPv4-mapped client outside IPv4 range',
    { ip: { ip: '1.2.3.0/24' } },
    { clientIp: '::ffff:1.2.4.4' },
    false,
  ],
  [
    'ip IPv4 client in IPv4-mapped range',
    { ip: { ip: '::ffff:1.2.3.0/120' } },
    { clientIp: '1.2.3.4' },
    true,
  ],
  ['ip IPv6 /32', { ip: { ip: '2001:db8::/32' } }, { clientIp: '2001:db8:abcd::1' }, true],
  ['ip IPv6 outside /32', { ip: { ip: '2001:db8::/32' } }, { clientIp: '2001:db9::1' }, false],
  ['ip IPv6 /128 exact', { ip: { ip: '2001:db8::1/128' } }, { clientIp: '2001:DB8:0:0:0:0:0:1' }, true],
  ['ip IPv6 /128 neighbour', { ip: { ip: '2001:db8::1/128' } }, { clientIp: '2001:db8::2' }, false],
  ['ip IPv6 /0 matches any IPv6', { ip: { ip: '::/0' } }, { clientIp: 'ffff::1' }, true],
  ['ip IPv6 /0 does not match IPv4', { ip: { ip: '::/0' } }, { clientIp: '10.0.0.1' }, false],
  ['ip without client address', { ip: { ip: '0.0.0.0/0' } }, {}, false],
  ['ip with unparsable client address', { ip: { ip: '0.0.0.0/0' } }, { clientIp: 'not-an-ip' }, false],

  // ip_list
  ['ip list IPv4 member', { ip_list: { id: IP_LIST } }, { clientIp: '192.0.2.9' }, true],
  ['ip list single address', { ip_list: { id: IP_LIST } }, { clientIp: '198.51.100.7' }, true],
  ['ip list IPv6 member', { ip_list: { id: IP_LIST } }, { clientIp: '2001:db8:1:ffff::1' }, true],
  ['ip list mapped member', { ip_list: { id: IP_LIST } }, { clientIp: '::ffff:192.0.2.9' }, true],
  ['ip list non-member', { ip_list: { id: IP_LIST } }, { clientIp: '198.51.100.8' }, false],

  // group: the group's own include / require / exclude, recursively
  ['group member', { group: { id: GROUP_STAFF } }, { identity: alice() }, true],
  [
    'group excluded member',
    { group: { id: GROUP_STAFF } },
    { identity: alice({ email: 'mallory@example.com' }) },
    false,
  ],
  ['group non-member', { group: { id: GROUP_STAFF } }, { identity: alice({ email: 'eve@evil.org' }) }, false],
  [
    'nested group satisfied',
    { group: { id: GROUP_STAFF_IN_OFFICE } },
    { identity: alice(), clientIp: '192.0.2.1' },
    true,
  ],
  [
    'nested group require fails',
    { group: { id: GROUP_STAFF_IN_OFFICE } },
    { identity: alice(), clientIp: '10.0.0.1' },
    false,
  ],

  // login_method: the IdP used at login
  ['login method equal', { login_method: { id: IDP_OTP } }, { identity: alice() }, true],
  ['login method other IdP', { login_method: { id: IDP_GITHUB } }, { identity: alice() }, false],
  [
    'login method without IdP',
    { login_method: { id: IDP_OTP } },
    { identity: { email: 'alice@example.com' } },
    false,
  ],

  // auth_method: amr contains the value
  [
    'auth method present',
    { auth_method: { auth_method: 'mfa' } },
    { identity: alice({ amr: ['pwd', 'mfa'] }) },
    true,
  ],
  [
    'auth method absent',
    { auth_method: { auth_method: 'mfa' } },
    { identity: alice({ amr: ['pwd'] }) },
    false,
  ],
  ['auth method without amr', { auth_method: { auth_method: 'mfa' } }, { identity: alice() }, false],

  // oidc: claim equality, array membership, right IdP only
  [
    'oidc string claim equal',
    { oidc: { claim_name: 'department', claim_value: 'eng', identity_provider_id: IDP_OIDC } },
    { identity: alice({ idp: { id: IDP_OIDC, type: 'oidc' }, oidcClaims: { department: 'eng' } }) },
    true,
  ],
  [
    'oidc string claim differs',
    { oidc: { claim_name: 'department', claim_value: 'eng', identity_provider_id: IDP_OIDC } },
    { identity: alice({ idp: { id: IDP_OIDC, type: 'oidc' }, oidcClaims: { department: 'engineering' } }) },
    false,
  ],
  [
    'oidc array claim contains',
    { oidc: { claim_name: 'groups', claim_value: 'admins', identity_provider_id: IDP_OIDC } },
    { identity: alice({ idp: { id: IDP_OIDC, type: 'oidc' }, oidcClaims: { groups: ['staff', 'admins'] } }) },
    true,
  ],
  [
    'oidc array claim lacks',
    { oidc: { claim_name: 'groups', claim_value: 'admins', identity_provider_id: IDP_OIDC } },
    { identity: alice({ idp: { id: IDP_OIDC, type: 'oidc' }, oidcClaims: { groups: ['staff'] } }) },
    false,
  ],
  [
    'oidc boolean claim as text',
    { oidc: { claim_name: 'email_verified', claim_value: 'true', identity_provider_id: IDP_OIDC } },
    { identity: alice({ idp: { id: IDP_OIDC, type: 'oidc' }, oidcClaims: { email_verified: true } }) },
    true,
  ],
  [
    'oidc claim from another IdP',
    { oidc: { claim_name: 'department', claim_value: 'eng', identity_provider_id: IDP_OIDC } },
    { identity: alice({ idp: { id: IDP_GITHUB, type: 'github' }, oidcClaims: { department: 'eng' } }) },
    false,
  ],
  [
    'oidc inherited property is not a claim',
    { oidc: { claim_name: 'constructor', claim_value: 'x', identity_provider_id: IDP_OIDC } },
    { identity: alice({ idp: { id: IDP_OIDC, type: 'oidc' }, oidcClaims: {} }) },
    false,
  ],

  // github-organization: org name (case-insensitive) and team when given
  [
    'github org member',
    { 'github-organization': { name: 'Acme', identity_provider_id: IDP_GITHUB } },
    {
      identity: alice({
        idp: { id: IDP_GITHUB, type: 'github' },
        github: { orgs: [{ name: 'acme', teams: [] }] },
      }),
    },
    true,
  ],
  [
    'github org non-member',
    { 'github-organization': { name: 'acme', identity_provider_id: IDP_GITHUB } },
    {
      identity: alice({
        idp: { id: IDP_GITHUB, type: 'github' },
        github: { orgs: [{ name: 'other', teams: [] }] },
      }),
    },
    false,
  ],
  [
    'github team member',
    { 'github-organization': { name: 'acme', team: 'Platform', identity_provider_id: IDP_GITHUB } },
    {
      identity: alice({
        idp: { id: IDP_GITHUB, type: 'github' },
        github: { orgs: [{ name: 'acme', teams: ['platform'] }] },
      }),
    },
    true,
  ],
  [
    'github org member outside the team',
    { 'github-organization': { name: 'acme', team: 'platform', identity_provider_id: IDP_GITHUB } },
    {
      identity: alice({
        idp: { id: IDP_GITHUB, type: 'github' },
        github: { orgs: [{ name: 'acme', teams: ['web'] }] },
      }),
    },
    false,
  ],
  [
    'github team in another org does not count',
    { 'github-organization': { name: 'acme', team: 'platform', identity_provider_id: IDP_GITHUB } },
    {
      identity: alice({
        idp: { id: IDP_GITHUB, type: 'github' },
        github: {
          orgs: [
            { name: 'acme', teams: [] },
            { name: 'other', teams: ['platform'] },
          ],
        },
      }),
    },
    false,
  ],
  [
    'github org via another IdP',
    { 'github-organization': { name: 'acme', identity_provider_id: IDP_GITHUB } },
    { identity: alice({ github: { orgs: [{ name: 'acme', teams: [] }] } }) },
    false,
  ],

  // geo: ISO codes, case-insensitive
  ['geo equal', { geo: { country_code: 'PT' } }, { country: 'PT' }, true],
  ['geo case-insensitive', { geo: { country_code: 'pt' } }, { country: 'Pt' }, true],
  ['geo other country', { geo: { country_code: 'PT' } }, { country: 'ES' }, false],
  ['geo unknown country', { geo: { country_code: 'PT' } }, {}, false],

  // certificate and common_name: the caller verified the client certificate
  ['certificate presented', { certificate: {} }, { mtls: { present: true } }, true],
  ['certificate absent', { certificate: {} }, { mtls: { present: false } }, false],
  ['certificate no mtls facts', { certificate: {} }, {}, false],
  [
    'common name equal',
    { common_name: { common_name: 'ci.example.com' } },
    { mtls: { present: true, commonName: 'ci.example.com' } },
    true,
  ],
  [
    'common name differs',
    { common_name: { common_name: 'ci.example.com' } },
    { mtls: { present: true, commonName: 'cd.example.com' } },
    false,
  ],
  [
    'common name without certificate',
    { common_name: { common_name: 'ci.example.com' } },
    { mtls: { present: false, commonName: 'ci.example.com' } },
    false,
  ],

  // service tokens
  ['service token equal', { service_token: { token_id: TOKEN_CI } }, { serviceTokenId: TOKEN_CI }, true],
  [
    'service token upper-case id',
    { service_token: { token_id: TOKEN_CI } },
    { serviceTokenId: TOKEN_CI.toUpperCase() },
    true,
  ],
  ['service token other', { service_token: { token_id: TOKEN_CI } }, { serviceTokenId: TOKEN_OTHER }, false],
  ['service token absent', { service_token: { token_id: TOKEN_CI } }, {}, false],
  ['any service token present', { any_valid_service_token: {} }, { serviceTokenId: TOKEN_OTHER }, true],
  ['any service token absent', { any_valid_service_token: {} }, {}, false],

  // linked_app_token: the uid of the app the verified token was issued for
  ['linked token for the app', { linked_app_token: { app_uid: APP_MCP } }, { linkedAppUid: APP_MCP }, true],
  [
    'linked token for another app',
    { linked_app_token: { app_uid: APP_MCP } },
    { linkedAppUid: APP_OTHER },
    false,
  ],
  ['no linked token', { linked_app_token: { app_uid: APP_MCP } }, {}, false],

  // external_evaluation: verdicts fetched by the caller, fail closed
  [
    'external verdict success',
    { external_evaluation: { evaluate_url: EVAL_URL, keys_url: KEYS_URL } },
    {
      identity: alice(),
      externalEvaluations: new Map([[EVAL_URL, { success: true, expiresAt: NOW + 1000 }]]),
    },
    true,
  ],
  [
    'external verdict failure',
    { external_evaluation: { evaluate_url: EVAL_URL, keys_url: KEYS_URL } },
    {
      identity: alice(),
      externalEvaluations: new Map([[EVAL_URL, { success: false, expiresAt: NOW + 1000 }]]),
    },
    false,
  ],
  [
    'external verdict expired',
    { external_evaluation: { evaluate_url: EVAL_URL, keys_url: KEYS_URL } },
    { identity: alice(), externalEvaluations: new Map([[EVAL_URL, { success: true, expiresAt: NOW }]]) },
    false,
  ],
  [
    'external verdict missing',
    { external_evaluation: { evaluate_url: EVAL_URL, keys_url: KEYS_URL } },
    {
      identity: alice(),
      externalEvaluations: new Map([['https://other.example.com', { success: true, expiresAt: NOW + 1000 }]]),
    },
    false,
  ],
  [
    'external no verdicts at all',
    { external_evaluation: { evaluate_url: EVAL_URL, keys_url: KEYS_URL } },
    { identity: alice() },
    false,
  ],
];

describe('selectors', () => {
  it.each(rows)('%s', (_description, rule, context, expected) => {
    expect(ruleMatches(rule, context, { groups, lists })).toBe(expected);
  });

  it('covers every supported selector', () => {
    const covered = new Set(rows.map(([, rule]) => Object.keys(rule)[0]));
    expect([...covered].sort()).toEqual(Object.keys(selectorValueSchemas).sort());
  });
});
