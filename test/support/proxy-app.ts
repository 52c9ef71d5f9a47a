// A proxy application as the management API creates one (every optional setting unset), its
// policies compiled by the real engine: shared by the proxy tests and the proxy bench.
import type { CompiledApp } from '../../src/policy/index.ts';
import { NO_APP_OPTIONS, type ProxyApp } from '../../src/proxy/config.ts';
import { compiledPolicies } from '../../src/proxy/from-snapshot.ts';

export function proxyApp(
  compiled: CompiledApp,
  fields: Pick<ProxyApp, 'id' | 'aud' | 'name' | 'hosts'> & Partial<Omit<ProxyApp, 'policies'>>,
): ProxyApp {
  return {
    type: 'self_hosted',
    oidcClientId: null,
    sessionDurationSeconds: 86_400,
    httpOnlyCookie: true,
    sameSiteCookie: 'lax',
    pathCookie: false,
    tokensRevokedAt: null,
    ...NO_APP_OPTIONS,
    ...fields,
    policies: compiledPolicies(compiled),
  };
}
