// Policy evaluation benchmark: median time per evaluation of a typical app (3 policies) and a
// large app (50 policies × 10 rules, only the last one matching, so every rule runs).
// Run: npx tsx bench/policy/run.ts   (results and this machine's numbers: bench/README.md)
import {
  type CompiledApp,
  compilePolicies,
  type EvaluateOptions,
  evaluate,
  type GroupDefinition,
  type PolicyDefinition,
  type RequestContext,
  type Rule,
} from '../../src/policy/index.ts';

// Time-based, so cheap and expensive cases both get enough iterations without a long run.
const WARMUP_MS = 500;
const ROUNDS = 15;
const ROUND_MS = 100;
const BATCH = 1000;

const uuid = (n: number) => `00000000-0000-4000-8000-${n.toString(16).padStart(12, '0')}`;
const IDP = uuid(1);
const STAFF = uuid(2);

/** A service-token policy, a geo block, and an email-domain allow through a group: a common shape. */
function typicalApp(): CompiledApp {
  const groups: GroupDefinition[] = [
    {
      id: STAFF,
      name: 'Staff',
      include: [{ email_domain: { domain: 'example.com' } }],
      exclude: [{ email: { email: 'ex-employee@example.com' } }],
    },
  ];
  return compilePolicies(
    [
      {
        id: 'ci',
        name: 'CI',
        decision: 'non_identity',
        precedence: 1,
        include: [{ service_token: { token_id: uuid(3) } }],
      },
      {
        id: 'block',
        name: 'Embargo',
        decision: 'deny',
        precedence: 2,
        include: [{ geo: { country_code: 'KP' } }, { geo: { country_code: 'IR' } }],
      },
      {
        id: 'staff',
        name: 'Staff',
        decision: 'allow',
        precedence: 3,
        include: [{ group: { id: STAFF } }],
        require: [{ auth_method: { auth_method: 'mfa' } }],
      },
    ],
    { groups },
  );
}

/** Ten rules per policy (6 include, 2 require, 2 exclude) of mixed selectors; none match before the last policy. */
function largeApp(): CompiledApp {
  const policies: PolicyDefinition[] = Array.from({ length: 50 }, (_, i): PolicyDefinition => {
    const last = i === 49;
    const include: Rule[] = [
      { email: { email: `user${i}@example.com` } },
      { email_domain: { domain: `team${i}.example.com` } },
      { ip: { ip: `10.${i}.0.0/16` } },
      { ip: { ip: `2001:db8:${i.toString(16)}::/48` } },
      { oidc: { claim_name: 'groups', claim_value: `team-${i}`, identity_provider_id: IDP } },
      last
        ? { email_domain: { domain: 'example.com' } }
        : { 'github-organization': { name: `org${i}`, identity_provider_id: IDP } },
    ];
    return {
      id: `p${i}`,
      name: `Policy ${i}`,
      decision: i % 5 === 0 ? 'deny' : 'allow',
      precedence: i + 1,
      include,
      require: [{ auth_method: { auth_method: 'mfa' } }, { login_method: { id: IDP } }],
      exclude: [{ geo: { country_code: 'KP' } }, { email: { email: `blocked${i}@example.com` } }],
    };
  });
  return compilePolicies(policies);
}

const context: RequestContext = {
  now: Date.now(),
  identity: {
    email: 'alice@example.com',
    userUid: uuid(9),
    idp: { id: IDP, type: 'oidc' },
    amr: ['pwd', 'mfa'],
    oidcClaims: { groups: ['staff', 'engineering'] },
  },
  clientIp: '192.0.2.10',
  country: 'PT',
};

/** Nanoseconds per evaluation in each round, sorted. */
function measure(app: CompiledApp, expected: string, options: EvaluateOptions): number[] {
  const check = evaluate(app, context, options);
  if (check.policy?.id !== expected)
    throw new Error(`benchmark app decided by ${check.policy?.id}, not ${expected}`);
  let sink = 0;
  const runFor = (ms: number): number => {
    const start = process.hrtime.bigint();
    const end = start + BigInt(ms * 1e6);
    let count = 0;
    let now = start;
    while (now < end) {
      for (let i = 0; i < BATCH; i++) sink += evaluate(app, context, options).decision.length;
      count += BATCH;
      now = process.hrtime.bigint();
    }
    return Number(now - start) / count;
  };
  runFor(WARMUP_MS);
  const perEvaluationNs = Array.from({ length: ROUNDS }, () => runFor(ROUND_MS));
  if (sink === 0) throw new Error('unreachable: keeps the loop from being optimised away');
  return perEvaluationNs.sort((a, b) => a - b);
}

function timeCompile(build: () => CompiledApp): number {
  build();
  const start = process.hrtime.bigint();
  for (let i = 0; i < 20; i++) build();
  return Number(process.hrtime.bigint() - start) / 20 / 1e6;
}

const typical = typicalApp();
const large = largeApp();
const rows = [
  {
    name: 'typical (3 policies)',
    app: typical,
    build: typicalApp,
    expected: 'staff',
    goalUs: 2,
    trace: false,
  },
  {
    name: 'large (50 policies × 10 rules)',
    app: large,
    build: largeApp,
    expected: 'p49',
    goalUs: 20,
    trace: false,
  },
  // For information: what an "explain this decision" call costs.
  {
    name: 'typical, trace on',
    app: typical,
    build: typicalApp,
    expected: 'staff',
    goalUs: null,
    trace: true,
  },
  { name: 'large, trace on', app: large, build: largeApp, expected: 'p49', goalUs: null, trace: true },
].map(({ name, app, build, expected, goalUs, trace }) => {
  const samples = measure(app, expected, { trace });
  const medianUs = samples[Math.floor(samples.length / 2)]! / 1000;
  return {
    app: name,
    'median µs/eval': medianUs.toFixed(3),
    'min µs': (samples[0]! / 1000).toFixed(3),
    'max µs': (samples.at(-1)! / 1000).toFixed(3),
    goal: goalUs === null ? '–' : `< ${goalUs} µs (${medianUs < goalUs ? 'met' : 'MISSED'})`,
    'compile ms': trace ? '' : timeCompile(build).toFixed(2),
  };
});

console.log(
  `Node ${process.version}: median of ${ROUNDS} rounds of ${ROUND_MS} ms after ${WARMUP_MS} ms warm-up, per app`,
);
console.table(rows);
