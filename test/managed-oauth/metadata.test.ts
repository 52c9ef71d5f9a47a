import { describe, expect, it } from 'vitest';
import { bearerChallenge, resourceForMetadataPath } from '../../src/oidc/managed/metadata.ts';
import { resourceBelongsTo } from '../../src/oidc/managed/spec.ts';
import type { SelfHostedApp } from '../../src/store/repositories/apps.ts';

describe('managed OAuth metadata', () => {
  it('maps RFC 9728 metadata URLs to the resource they describe', () => {
    const origin = 'https://mcp.example.com';
    expect(resourceForMetadataPath(origin, '/.well-known/oauth-protected-resource')).toBe(origin);
    expect(resourceForMetadataPath(origin, '/.well-known/oauth-protected-resource/mcp')).toBe(
      `${origin}/mcp`,
    );
    expect(resourceForMetadataPath(origin, '/.well-known/oauth-protected-resourcex')).toBeNull();
    expect(resourceForMetadataPath(origin, '/mcp')).toBeNull();
  });

  it('builds the challenge, never letting the path break out of its quoted string', () => {
    expect(bearerChallenge('https://a.example', '/mcp', null, 'access')).toBe(
      'Bearer resource_metadata="https://a.example/.well-known/oauth-protected-resource/mcp", scope="access"',
    );
    expect(bearerChallenge('https://a.example', '/', 'invalid_token', 'access')).toBe(
      'Bearer error="invalid_token", resource_metadata="https://a.example/.well-known/oauth-protected-resource", scope="access"',
    );
    const hostile = bearerChallenge('https://a.example', '/x", error="forged\\', null, 'access');
    expect(hostile).not.toContain('forged"');
    expect(hostile.match(/"/g)).toHaveLength(4);
  });

  it('accepts a resource only on the app hostnames, with the issuer scheme and port', () => {
    const app = {
      config: { destinations: ['mcp.example.com', '*.tools.example.com/mcp'] },
    } as unknown as SelfHostedApp;
    const origin = 'https://mcp.example.com';
    expect(resourceBelongsTo(app, origin, 'https://mcp.example.com/mcp')).toBe(true);
    expect(resourceBelongsTo(app, origin, 'https://a.tools.example.com/mcp')).toBe(true);
    expect(resourceBelongsTo(app, origin, 'https://evil.example.com/mcp')).toBe(false);
    expect(resourceBelongsTo(app, origin, 'http://mcp.example.com/mcp')).toBe(false);
    expect(resourceBelongsTo(app, origin, 'https://mcp.example.com:8443/mcp')).toBe(false);
    expect(resourceBelongsTo(app, origin, 'https://mcp.example.com/mcp#x')).toBe(false);
    expect(resourceBelongsTo(app, origin, 'https://u:p@mcp.example.com/mcp')).toBe(false);
  });
});
