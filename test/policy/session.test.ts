// evaluateSession: identity selectors keep their login value, request selectors are checked per
// request, and the login's own decision is always reproduced (no login loop).
import { describe, expect, it } from 'vitest';
import {
  type AdmittedBy,
  compilePolicies,
  evaluate,
  evaluateSession,
  type GroupDefinition,
  type Identity,
  type PolicyDefinition,
  type RequestContext,
  type Rule,
} from '../../src/policy/index.ts';
import { IDP_GITHUB, IDP_OIDC, NOW, policy, uuid } from './fixtures.ts';

const OFFICE: Rule = { ip: { ip: '10.0.0.0/8' } };
const ENGINEERS: Rule = {
  oidc: { claim_name: 'groups', claim_value: 'engineering', identity_provider_id: IDP_OIDC },
};
const CONTRACTORS: Rule = {
  oidc: { claim_name: 'groups', claim_value: 'contractors', identity_provider_id: IDP_OIDC },
};
const GITHUB_ORG: Rule = { 'github-organization': { name: 'acme', identity_provider_id: IDP_GITHUB } };

/** The full identity the login saw. */
const engineer: Identity = {
  email: 'bob@example.com',
  userUid: uuid(0x501),
  idp: { id: IDP_OIDC, type: 'oidc' },
  oidcClaims: { groups: ['engineering'] },
};
const contractor: Identity = { ...engineer, oidcClaims: { groups: ['contractors', 'engineering'] } };

/** What the proxy has per request: the app token's email and sub. */
const fromToken = (identity: Identity): Identity => ({ email: identity.email!, userUid: identity.userUid! });

const at = (clientIp: string, identity?: Identity): RequestContext => ({
  now: NOW,
  clientIp,
  ...(identity && { identity }),
});

/** Logs in (full evaluation) and returns what the login records in the token, or null when denied. */
function login(policies: PolicyDefinition[], context: RequestContext, groups: GroupDefinition[] = []) {
  const app = compilePolicies(policies, { groups });
  const decision = evaluate(app, context);
  const admitted: AdmittedBy | null =
    decision.decision === 'allow'
      ? { policyId: decision.policy!.id, precedence: decision.policy!.precedence }
      : null;
  return { app, admitted };
}

describe('evaluateSession', () => {
  it('keeps a user admitted by an OIDC group claim, which the token does not carry', () => {
    const policies = [policy('allow', [ENGINEERS])];
    const { app, admitted } = login(policies, at('192.0.2.1', engineer));
    expect(admitted).not.toBeNull();
    // Re-evaluating identity rules with the token's facts denies: the defect this fixes.
    expect(evaluate(app, at('192.0.2.1', fromToken(engineer))).decision).toBe('deny');
    expect(evaluateSession(app, at('192.0.2.1', fromToken(engineer)), admitted!)?.decision).toBe('allow');
  });

  it('checks the request selectors of the admitting policy on every request', () => {
    const policies = [policy('allow', [GITHUB_ORG], { require: [OFFICE] })];
    const member: Identity = {
      email: 'carol@example.com',
      userUid: uuid(0x502),
      idp: { id: IDP_GITHUB, type: 'github' },
      github: { orgs: [{ name: 'acme', teams: [] }] },
    };
    const { app, admitted } = login(policies, at('10.1.2.3', member));
    expect(evaluateSession(app, at('10.9.9.9', fromToken(member)), admitted!)?.decision).toBe('allow');
    // Left the office: the token no longer proves enough, a fresh login decides.
    expect(evaluateSession(app, at('192.0.2.1', fromToken(member)), admitted!)).toBeNull();
  });

  it('checks email rules exactly, so a mixed include is not widened', () => {
    const alice: Identity = { email: 'alice@example.com', userUid: uuid(0x503) };
    const policies = [policy('allow', [{ email: { email: 'alice@example.com' } }, OFFICE])];
    const viaOffice = login(policies, at('10.0.0.7', engineer));
    expect(viaOffice.admitted).not.toBeNull();
    expect(
      evaluateSession(viaOffice.app, at('10.0.0.8', fromToken(engineer)), viaOffice.admitted!),
    ).not.toBeNull();
    // Bob got in through the office range only; outside it his token is not enough.
    expect(
      evaluateSession(viaOffice.app, at('192.0.2.1', fromToken(engineer)), viaOffice.admitted!),
    ).toBeNull();
    const viaEmail = login(policies, at('192.0.2.1', alice));
    expect(evaluateSession(viaEmail.app, at('198.51.100.1', alice), viaEmail.admitted!)?.decision).toBe(
      'allow',
    );
  });

  it('applies an earlier Block by its request selectors, and not by identity rules the login already passed', () => {
    const blockNet = policy('deny', [{ ip: { ip: '203.0.113.0/24' } }]);
    const blockContractors = policy('deny', [CONTRACTORS]);
    const blockAllButEngineers = policy('deny', [{ everyone: {} }], { exclude: [ENGINEERS] });
    const allow = policy('allow', [{ email_domain: { domain: 'example.com' } }]);
    const policies = [blockNet, blockContractors, blockAllButEngineers, allow];
    const { app, admitted } = login(policies, at('192.0.2.1', engineer));
    expect(admitted?.policyId).toBe(allow.id);
    const session = (ip: string) => evaluateSession(app, at(ip, fromToken(engineer)), admitted!);
    expect(session('192.0.2.1')?.decision).toBe('allow');
    const blocked = session('203.0.113.9');
    expect(blocked?.decision).toBe('deny');
    expect(blocked?.policy?.id).toBe(blockNet.id);
    // A contractor is blocked at the login and never gets a token to present.
    expect(login(policies, at('192.0.2.1', contractor)).admitted).toBeNull();
  });

  it('reads identity rules inside groups with the right polarity', () => {
    const contractors: GroupDefinition = { id: uuid(0x601), name: 'contractors', include: [CONTRACTORS] };
    const policies = [
      policy('allow', [{ everyone: {} }], {
        exclude: [{ group: { id: contractors.id } }],
        require: [OFFICE],
      }),
    ];
    const { app, admitted } = login(policies, at('10.0.0.1', engineer), [contractors]);
    expect(evaluateSession(app, at('10.0.0.2', fromToken(engineer)), admitted!)?.decision).toBe('allow');
    expect(evaluateSession(app, at('192.0.2.1', fromToken(engineer)), admitted!)).toBeNull();
  });

  it('runs Bypass and Service Auth first with the request facts', () => {
    const bypass = policy('bypass', [{ ip: { ip: '127.0.0.0/8' } }]);
    const allow = policy('allow', [ENGINEERS]);
    const { app, admitted } = login([bypass, allow], at('192.0.2.1', engineer));
    expect(evaluateSession(app, at('127.0.0.1', fromToken(engineer)), admitted!)?.decision).toBe('bypass');
    expect(evaluateSession(app, at('192.0.2.1', fromToken(engineer)), admitted!)?.decision).toBe('allow');
  });

  it('asks for a fresh login when the admitting policy is gone, moved or no longer an Allow', () => {
    const allow = policy('allow', [ENGINEERS], { precedence: 5 });
    const { admitted } = login([allow], at('192.0.2.1', engineer));
    const request = at('192.0.2.1', fromToken(engineer));
    const other = policy('allow', [GITHUB_ORG], { precedence: 6 });
    expect(evaluateSession(compilePolicies([other]), request, admitted!)).toBeNull();
    expect(evaluateSession(compilePolicies([{ ...allow, precedence: 7 }]), request, admitted!)).toBeNull();
    expect(evaluateSession(compilePolicies([{ ...allow, decision: 'deny' }]), request, admitted!)).toBeNull();
    expect(evaluateSession(compilePolicies([allow]), request, admitted!)?.decision).toBe('allow');
  });

  it('reproduces the login decision for every combination of request facts and identities (no login loop)', () => {
    const rules: Rule[] = [OFFICE, ENGINEERS, CONTRACTORS, { email: { email: 'bob@example.com' } }];
    const identities = [engineer, contractor, { email: 'eve@example.org', userUid: uuid(0x504) }];
    const ips = ['10.0.0.1', '192.0.2.1'];
    let checked = 0;
    for (const a of rules) {
      for (const b of rules) {
        const policies = [
          policy('deny', [a], { exclude: [b] }),
          policy('allow', [a, b], { require: [{ everyone: {} }] }),
          policy('allow', [b], { exclude: [a] }),
        ];
        for (const identity of identities) {
          for (const ip of ips) {
            const { app, admitted } = login(policies, at(ip, identity));
            if (!admitted) continue;
            checked++;
            expect(evaluateSession(app, at(ip, fromToken(identity)), admitted)?.policy?.id).toBe(
              admitted.policyId,
            );
          }
        }
      }
    }
    expect(checked).toBeGreaterThan(20);
  });
});
