import { describe, expect, it } from 'vitest';
import {
  checkRegistration,
  type DcrSettings,
  redirectUriAllowed,
} from '../../src/oidc/managed/registration-policy.ts';

const none: DcrSettings = {
  enabled: true,
  allow_any_on_localhost: false,
  allow_any_on_loopback: false,
  allowed_uris: [],
};

describe('redirect URI allow-list (spec §2.5)', () => {
  it('allow_any_on_localhost admits any port and path on localhost, and nothing else', () => {
    const settings = { ...none, allow_any_on_localhost: true };
    expect(redirectUriAllowed('http://localhost:33418/callback', settings)).toBe(true);
    expect(redirectUriAllowed('https://localhost/cb', settings)).toBe(true);
    expect(redirectUriAllowed('http://127.0.0.1:33418/callback', settings)).toBe(false);
    expect(redirectUriAllowed('http://localhost.evil.example/cb', settings)).toBe(false);
    expect(redirectUriAllowed('http://evil.localhost/cb', settings)).toBe(false);
    expect(redirectUriAllowed('myapp://localhost/cb', settings)).toBe(false);
    expect(redirectUriAllowed('http://localhost:1/cb', none)).toBe(false);
  });

  it('allow_any_on_loopback admits loopback addresses only', () => {
    const settings = { ...none, allow_any_on_loopback: true };
    expect(redirectUriAllowed('http://127.0.0.1:5555/cb', settings)).toBe(true);
    expect(redirectUriAllowed('http://127.8.9.10/cb', settings)).toBe(true);
    expect(redirectUriAllowed('http://[::1]:5555/cb', settings)).toBe(true);
    expect(redirectUriAllowed('http://localhost:5555/cb', settings)).toBe(false);
    expect(redirectUriAllowed('http://10.0.0.1/cb', settings)).toBe(false);
    expect(redirectUriAllowed('http://127.0.0.1.nip.io/cb', settings)).toBe(false);
  });

  it('allowed_uris: exact entries, /* prefixes that cannot be escaped, custom schemes exact', () => {
    const settings = {
      ...none,
      allowed_uris: [
        'https://app.example/oauth/*',
        'https://exact.example/cb',
        'cursor://anysphere.cursor-mcp/oauth/callback',
        'http://127.0.0.1/native',
      ],
    };
    expect(redirectUriAllowed('https://app.example/oauth/callback', settings)).toBe(true);
    expect(redirectUriAllowed('https://app.example/oauth/a/b?x=1', settings)).toBe(true);
    expect(redirectUriAllowed('https://app.example/oauthx/callback', settings)).toBe(false);
    expect(redirectUriAllowed('https://app.example/other', settings)).toBe(false);
    expect(redirectUriAllowed('https://app.example/oauth/../admin', settings)).toBe(false);
    expect(redirectUriAllowed('https://app.example/oauth/%2e%2e/admin', settings)).toBe(false);
    expect(redirectUriAllowed('https://app.example.evil.example/oauth/cb', settings)).toBe(false);
    expect(redirectUriAllowed('https://app.example:8443/oauth/cb', settings)).toBe(false);
    expect(redirectUriAllowed('http://app.example/oauth/cb', settings)).toBe(false);
    expect(redirectUriAllowed('https://user@app.example/oauth/cb', settings)).toBe(false);
    expect(redirectUriAllowed('https://app.example/oauth/cb#x', settings)).toBe(false);
    expect(redirectUriAllowed('https://exact.example/cb', settings)).toBe(true);
    expect(redirectUriAllowed('https://exact.example/cb/more', settings)).toBe(false);
    expect(redirectUriAllowed('https://exact.example/cb?x=1', settings)).toBe(false);
    expect(redirectUriAllowed('cursor://anysphere.cursor-mcp/oauth/callback', settings)).toBe(true);
    expect(redirectUriAllowed('cursor://anysphere.cursor-mcp/oauth/callback2', settings)).toBe(false);
    // RFC 8252 §7.3: any port for a loopback entry.
    expect(redirectUriAllowed('http://127.0.0.1:49152/native', settings)).toBe(true);
    expect(redirectUriAllowed('http://127.0.0.1:49152/other', settings)).toBe(false);
  });

  it('refuses dangerous schemes even when listed', () => {
    expect(
      redirectUriAllowed('javascript:alert(1)', { ...none, allowed_uris: ['javascript:alert(1)'] }),
    ).toBe(false);
  });
});

describe('registration requests (RFC 7591)', () => {
  const settings = { ...none, allow_any_on_loopback: true };
  const sdkBody = {
    client_name: 'MCP client',
    redirect_uris: ['http://127.0.0.1:33418/callback'],
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    token_endpoint_auth_method: 'none',
    scope: 'mcp',
  };

  it('accepts what the MCP SDK client sends', () => {
    expect(checkRegistration(sdkBody, settings)).toBeNull();
  });

  it('refuses a redirect URI outside the allowed set', () => {
    expect(
      checkRegistration({ ...sdkBody, redirect_uris: ['https://evil.example/cb'] }, settings),
    ).toMatchObject({
      error: 'invalid_redirect_uri',
    });
    expect(checkRegistration({ ...sdkBody, redirect_uris: [] }, settings)?.error).toBe(
      'invalid_redirect_uri',
    );
    expect(checkRegistration({ ...sdkBody, redirect_uris: [42] }, settings)?.error).toBe(
      'invalid_redirect_uri',
    );
  });

  it('refuses metadata that would make Gatehouse fetch URLs, and other grant types', () => {
    expect(checkRegistration({ ...sdkBody, jwks_uri: 'http://169.254.169.254/' }, settings)?.error).toBe(
      'invalid_client_metadata',
    );
    expect(
      checkRegistration({ ...sdkBody, sector_identifier_uri: 'https://x.example/' }, settings)?.error,
    ).toBe('invalid_client_metadata');
    expect(checkRegistration({ ...sdkBody, grant_types: ['implicit'] }, settings)?.error).toBe(
      'invalid_client_metadata',
    );
    expect(checkRegistration({ ...sdkBody, response_types: ['token'] }, settings)?.error).toBe(
      'invalid_client_metadata',
    );
    expect(checkRegistration([], settings)?.error).toBe('invalid_client_metadata');
  });
});
