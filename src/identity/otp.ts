// The `onetimepin` identity provider: a 6-digit PIN sent by email [D: identity/one-time-pin].
// - valid 10 minutes, single use, at most 5 tries, then a new PIN must be requested;
// - stored only as an HMAC keyed by the browser's CF_Session cookie, which never reaches the
//   database: a copy of the database does not give the PINs (10^6 candidates would fall to any
//   offline search under a plain hash);
// - rate-limited per email and per client address, counted in the store so every node agrees.
import { createHmac, randomInt, timingSafeEqual } from 'node:crypto';
import nodemailer from 'nodemailer';
import type { Settings } from '../config/settings.ts';
import type { Logger } from '../logging.ts';

export const PIN_LIFETIME_MS = 10 * 60_000;
export const MAX_PIN_ATTEMPTS = 5;
export const PIN_RATE_WINDOW_MS = 15 * 60_000;
export const MAX_PINS_PER_EMAIL = 5;
// Generous per address: a whole office may sit behind one NAT address.
export const MAX_PINS_PER_IP = 60;

export function generatePin(): string {
  return randomInt(0, 1_000_000).toString().padStart(6, '0');
}

export function pinHash(browserSecret: string, flowId: string, pin: string): string {
  return createHmac('sha256', browserSecret).update(`${flowId}:${pin}`).digest('hex');
}

export function pinMatches(browserSecret: string, flowId: string, pin: string, stored: string): boolean {
  const expected = Buffer.from(stored, 'hex');
  const actual = Buffer.from(pinHash(browserSecret, flowId, pin), 'hex');
  return expected.length === actual.length && timingSafeEqual(expected, actual);
}

export interface PinMailer {
  send(to: string, pin: string, organisation: string): Promise<void>;
}

/**
 * Mails PINs through `smtp.url`. Without SMTP settings the PIN is written to the server log at
 * `warn` under a loud development-mode notice: the one place Gatehouse logs a secret, on
 * purpose, so a local installation can log in before mail is set up.
 */
export function createPinMailer(smtp: Settings['smtp'], logger: Logger): PinMailer {
  if (!smtp) {
    logger.warn(
      'DEVELOPMENT MODE: no smtp settings, so one-time PINs are written to this log instead of being mailed. ' +
        'Anyone who can read this log can sign in as any user. Configure smtp.url and smtp.from.',
    );
    return {
      async send(to, pin) {
        // Deliberately not under a redacted field name (`pin`): this line exists to show it.
        logger.warn({ to, developmentOneTimeCode: pin }, 'DEVELOPMENT MODE one-time PIN (not mailed)');
      },
    };
  }
  const transport = nodemailer.createTransport(smtp.url);
  return {
    async send(to, pin, organisation) {
      await transport.sendMail({
        from: smtp.from,
        to,
        subject: `Your ${organisation} login code`,
        text: `Your login code is ${pin}\n\nIt is valid for 10 minutes and can be used once.\nIf you did not try to sign in, ignore this message.\n`,
      });
    },
  };
}
