// Credentials never reach a log line: pino's redaction on the headers and fields that carry them.
import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { createLogger } from '../../src/logging.ts';

/** A logger writing JSON lines into memory; `lines()` parses what was written. */
function memoryLogger(level = 'info') {
  const chunks: string[] = [];
  const stream = new Writable({
    write(chunk, _encoding, callback) {
      chunks.push(String(chunk));
      callback();
    },
  });
  const logger = createLogger(level, stream);
  return {
    logger,
    text: () => chunks.join(''),
    lines: () =>
      chunks
        .join('')
        .split('\n')
        .filter(Boolean)
        .map((line) => JSON.parse(line) as Record<string, unknown>),
  };
}

const secrets = {
  authorization: 'Bearer eyJhbGciOiJSUzI1NiJ9.authorization-secret.sig',
  cookie: 'CF_Authorization=cookie-secret-jwt; other=1',
  assertion: 'eyJhbGciOiJSUzI1NiJ9.assertion-secret.sig',
  cfAccessToken: 'eyJhbGciOiJSUzI1NiJ9.cf-access-token-secret.sig',
  clientSecret: 'client-secret-0123456789abcdef0123456789abcdef',
  token: 'api-token-secret-0123456789abcdefghijklmnop',
  password: 'hunter2-password',
};

describe('log redaction', () => {
  it('hides credential headers of a logged request and keeps the rest of the line', () => {
    const { logger, lines, text } = memoryLogger();
    logger.info(
      {
        req: {
          method: 'GET',
          url: '/wiki/page',
          headers: {
            host: 'wiki.example.com',
            'user-agent': 'curl/8',
            authorization: secrets.authorization,
            cookie: secrets.cookie,
            'cf-access-jwt-assertion': secrets.assertion,
            'cf-access-token': secrets.cfAccessToken,
            'cf-access-client-id': 'abc.access',
            'cf-access-client-secret': secrets.clientSecret,
          },
        },
      },
      'request',
    );
    const [line] = lines();
    const headers = (line!.req as { headers: Record<string, string> }).headers;
    expect(headers.authorization).toBe('[redacted]');
    expect(headers.cookie).toBe('[redacted]');
    expect(headers['cf-access-jwt-assertion']).toBe('[redacted]');
    expect(headers['cf-access-token']).toBe('[redacted]');
    expect(headers['cf-access-client-secret']).toBe('[redacted]');
    // Not secrets: still there to debug with.
    expect(headers.host).toBe('wiki.example.com');
    expect(headers['user-agent']).toBe('curl/8');
    expect(line!.msg).toBe('request');
    for (const value of Object.values(secrets)) expect(text()).not.toContain(value);
    expect(text()).not.toContain('secret.sig');
  });

  it('hides the same headers logged on their own, and Set-Cookie on a response', () => {
    const { logger, lines, text } = memoryLogger();
    logger.info({ headers: { authorization: secrets.authorization, cookie: secrets.cookie } }, 'upstream');
    logger.info(
      {
        headers: {
          'cf-access-jwt-assertion': secrets.assertion,
          'cf-access-client-secret': secrets.clientSecret,
        },
      },
      'to origin',
    );
    logger.info({ res: { statusCode: 302, headers: { 'set-cookie': secrets.cookie } } }, 'response');
    const [upstream, origin, response] = lines();
    expect(upstream!.headers).toEqual({ authorization: '[redacted]', cookie: '[redacted]' });
    expect(origin!.headers).toEqual({
      'cf-access-jwt-assertion': '[redacted]',
      'cf-access-client-secret': '[redacted]',
    });
    expect((response!.res as { headers: Record<string, string> }).headers['set-cookie']).toBe('[redacted]');
    for (const value of Object.values(secrets)) expect(text()).not.toContain(value);
  });

  it('hides client_secret, token, password and friends, at the top level and one level down', () => {
    const { logger, lines, text } = memoryLogger();
    logger.info(
      { token: secrets.token, client_secret: secrets.clientSecret, password: secrets.password },
      'top',
    );
    logger.info(
      {
        serviceToken: { client_id: 'abc.access', client_secret: secrets.clientSecret },
        apiToken: { id: 'tok-1', token: secrets.token },
        idp: { password: secrets.password, secret: secrets.clientSecret },
        grant: { access_token: secrets.token, refresh_token: secrets.token, id_token: secrets.assertion },
      },
      'nested',
    );
    const [top, nested] = lines();
    expect(top).toMatchObject({ token: '[redacted]', client_secret: '[redacted]', password: '[redacted]' });
    expect(nested).toMatchObject({
      serviceToken: { client_id: 'abc.access', client_secret: '[redacted]' },
      apiToken: { id: 'tok-1', token: '[redacted]' },
      idp: { password: '[redacted]', secret: '[redacted]' },
      grant: { access_token: '[redacted]', refresh_token: '[redacted]', id_token: '[redacted]' },
    });
    for (const value of Object.values(secrets)) expect(text()).not.toContain(value);
  });

  it('writes JSON lines with level, time and service, and honours the level', () => {
    const { logger, lines } = memoryLogger('warn');
    logger.info('not written');
    logger.warn({ accountId: 'a'.repeat(32) }, 'written');
    const all = lines();
    expect(all).toHaveLength(1);
    expect(all[0]).toMatchObject({
      level: 40,
      service: 'gatehouse',
      accountId: 'a'.repeat(32),
      msg: 'written',
    });
    expect(Number.isNaN(Date.parse(String(all[0]!.time)))).toBe(false);
  });
});
