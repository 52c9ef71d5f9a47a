// Structured logs with pino. Credentials never reach a log line: request headers that carry
// them and any field named like a secret are redacted wherever they appear.
import pino, { type Logger } from 'pino';

export const REDACTED_PATHS = [
  'req.headers.authorization',
  'req.headers.cookie',
  'req.headers["cf-access-jwt-assertion"]',
  'req.headers["cf-access-token"]',
  'req.headers["cf-access-client-id"]',
  'req.headers["cf-access-client-secret"]',
  'res.headers["set-cookie"]',
  'headers.authorization',
  'headers.cookie',
  'headers["cf-access-jwt-assertion"]',
  'headers["cf-access-token"]',
  'headers["cf-access-client-secret"]',
  '*.authorization',
  '*.cookie',
  '*.secret',
  '*.client_secret',
  '*.password',
  '*.token',
  '*.access_token',
  '*.refresh_token',
  '*.id_token',
  '*.masterKey',
  '*.pin',
  'secret',
  'client_secret',
  'password',
  'token',
  'pin',
];

export function createLogger(level: string, destination?: pino.DestinationStream): Logger {
  return pino(
    {
      level,
      redact: { paths: REDACTED_PATHS, censor: '[redacted]' },
      base: { service: 'gatehouse' },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    destination ?? pino.destination({ fd: 2, sync: true }),
  );
}

export type { Logger };
