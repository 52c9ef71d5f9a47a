// TLS for the one listener (settings tlsCert, tlsKey, tlsClientCa). With a client CA the server
// asks for a client certificate but does not insist on one (Cloudflare's mTLS: a request without
// a certificate is still answered, and the policies decide); the handshake verifies a presented
// certificate against that CA, and src/tls/client-certificate.ts hands the verdict to the policies.
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type https from 'node:https';
import { createSecureContext } from 'node:tls';
import { ConfigError, type Settings } from '../config/settings.ts';

/** A slow or silent client may hold a connection open this long before its handshake ends. */
const HANDSHAKE_TIMEOUT_MS = 10_000;
const PEM_BLOCK = /-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----/g;

type TlsSettings = Pick<Settings, 'tlsCert' | 'tlsKey' | 'tlsClientCa'>;

/** Whether requests may carry verified client certificates, i.e. `certificate` rules can match. */
export function verifiesClientCertificates(settings: TlsSettings): boolean {
  return settings.tlsCert !== undefined && settings.tlsClientCa !== undefined;
}

/**
 * The HTTPS server options from the settings' PEM files, or null for plain HTTP. Throws
 * ConfigError naming the setting and file when a file is missing, unreadable or not what it should
 * be, so `gatehouse start` stops with exit code 2 instead of failing on the first handshake.
 */
export function listenerTlsOptions(settings: TlsSettings): https.ServerOptions | null {
  if (settings.tlsCert === undefined || settings.tlsKey === undefined) return null;
  const cert = readPem('tlsCert', settings.tlsCert);
  const key = readPem('tlsKey', settings.tlsKey);
  certificates('tlsCert', settings.tlsCert, cert);
  try {
    createSecureContext({ cert, key });
  } catch (error) {
    throw new ConfigError(
      `tlsKey ${settings.tlsKey} does not fit tlsCert ${settings.tlsCert}: ${(error as Error).message}`,
    );
  }
  const options: https.ServerOptions = { cert, key, handshakeTimeout: HANDSHAKE_TIMEOUT_MS };
  if (settings.tlsClientCa === undefined) return options;
  const ca = readPem('tlsClientCa', settings.tlsClientCa);
  for (const authority of certificates('tlsClientCa', settings.tlsClientCa, ca)) {
    if (!authority.ca) {
      throw new ConfigError(
        `tlsClientCa ${settings.tlsClientCa}: the certificate for ${authority.subject.replace(/\n/g, ', ')} is not a CA certificate (basicConstraints CA:TRUE)`,
      );
    }
  }
  // Only the client CA is trusted for client certificates, not the system store. A handshake
  // whose certificate fails verification still completes (rejectUnauthorized: false): the
  // request then carries no certificate fact, like one that presented none.
  return { ...options, ca, requestCert: true, rejectUnauthorized: false };
}

function readPem(setting: string, file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (error) {
    throw new ConfigError(`cannot read ${setting} file ${file}: ${(error as Error).message}`);
  }
}

/** The PEM certificates in `text` (at least one), parsed. */
function certificates(setting: string, file: string, text: string): X509Certificate[] {
  const blocks = text.match(PEM_BLOCK) ?? [];
  if (blocks.length === 0) throw new ConfigError(`${setting} file ${file} holds no PEM certificate`);
  return blocks.map((block) => {
    try {
      return new X509Certificate(block);
    } catch (error) {
      throw new ConfigError(
        `${setting} file ${file} holds an unreadable certificate: ${(error as Error).message}`,
      );
    }
  });
}
