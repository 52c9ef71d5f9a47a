// A small X.509 PKI made in the test: certificate authorities and the server and client
// certificates they issue, for real HTTPS with client certificates (mTLS) on loopback. Built with
// @peculiar/x509 (already a runtime dependency, src/keys/generate.ts) because node:crypto cannot
// issue certificates; in-process generation keeps the tests free of an `openssl` binary.
import 'reflect-metadata';
import { randomBytes, webcrypto } from 'node:crypto';
import * as x509 from '@peculiar/x509';

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

const ALGORITHM = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };
const DAY_MS = 86_400_000;

export interface IssuedCertificate {
  /** PEM certificate and PKCS#8 PEM private key. */
  cert: string;
  key: string;
}

export interface CertificateAuthority extends IssuedCertificate {
  issue(options: IssueOptions): Promise<IssuedCertificate>;
}

export interface IssueOptions {
  commonName: string;
  /** `server` certificates name loopback (and `dnsNames`) in their SANs; `client` ones carry clientAuth. */
  usage: 'server' | 'client';
  dnsNames?: string[];
  /** Validity window; by default from a minute ago to a day from now. */
  notBefore?: Date;
  notAfter?: Date;
}

function generateKeys(): Promise<webcrypto.CryptoKeyPair> {
  return webcrypto.subtle.generateKey(ALGORITHM, true, [
    'sign',
    'verify',
  ]) as Promise<webcrypto.CryptoKeyPair>;
}

async function pkcs8Pem(key: webcrypto.CryptoKey): Promise<string> {
  const der = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', key)).toString('base64');
  return `-----BEGIN PRIVATE KEY-----\n${der.replace(/(.{64})/g, '$1\n')}\n-----END PRIVATE KEY-----\n`;
}

/** A positive serial number (RFC 5280 §4.1.2.2). */
function serialNumber(): string {
  return `01${randomBytes(15).toString('hex')}`;
}

/** A self-signed CA (basicConstraints CA:TRUE, keyCertSign) that issues leaf certificates. */
export async function createCertificateAuthority(name: string): Promise<CertificateAuthority> {
  const keys = await generateKeys();
  const now = Date.now();
  const caCertificate = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serialNumber(),
    name: `CN=${name}`,
    notBefore: new Date(now - 60_000),
    notAfter: new Date(now + DAY_MS),
    signingAlgorithm: ALGORITHM,
    keys,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return {
    cert: caCertificate.toString('pem'),
    key: await pkcs8Pem(keys.privateKey),
    async issue(options) {
      const leafKeys = await generateKeys();
      const server = options.usage === 'server';
      const certificate = await x509.X509CertificateGenerator.create({
        serialNumber: serialNumber(),
        subject: `CN=${options.commonName}`,
        issuer: caCertificate.subject,
        notBefore: options.notBefore ?? new Date(Date.now() - 60_000),
        notAfter: options.notAfter ?? new Date(Date.now() + DAY_MS),
        signingAlgorithm: ALGORITHM,
        publicKey: leafKeys.publicKey,
        signingKey: keys.privateKey,
        extensions: [
          new x509.BasicConstraintsExtension(false, undefined, true),
          new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
          new x509.ExtendedKeyUsageExtension([
            server ? x509.ExtendedKeyUsage.serverAuth : x509.ExtendedKeyUsage.clientAuth,
          ]),
          await x509.AuthorityKeyIdentifierExtension.create(keys.publicKey),
          ...(server
            ? [
                new x509.SubjectAlternativeNameExtension([
                  { type: 'ip' as const, value: '127.0.0.1' },
                  ...['localhost', ...(options.dnsNames ?? [])].map((value) => ({
                    type: 'dns' as const,
                    value,
                  })),
                ]),
              ]
            : []),
        ],
      });
      return { cert: certificate.toString('pem'), key: await pkcs8Pem(leafKeys.privateKey) };
    },
  };
}
