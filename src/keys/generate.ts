// Signing-key generation: RS256 (what Cloudflare Access signs with), 2048-bit, a 64-hex kid
// derived from the public key, and a self-signed X.509 certificate for the certs endpoint's
// `public_cert`/`public_certs` (spec §4.4).
import 'reflect-metadata';
import { createHash, randomBytes, webcrypto } from 'node:crypto';
import * as x509 from '@peculiar/x509';

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

const algorithm = {
  name: 'RSASSA-PKCS1-v1_5',
  hash: 'SHA-256',
  publicExponent: new Uint8Array([1, 0, 1]),
  modulusLength: 2048,
};

export interface GeneratedKey {
  kid: string;
  privateKeyPkcs8: Buffer;
  publicJwk: { kty: 'RSA'; n: string; e: string; kid: string; alg: 'RS256'; use: 'sig' };
  certificatePem: string;
}

export async function generateSigningKey(now: Date, subject: string): Promise<GeneratedKey> {
  const keys = (await webcrypto.subtle.generateKey(algorithm, true, [
    'sign',
    'verify',
  ])) as webcrypto.CryptoKeyPair;
  const spki = Buffer.from(await webcrypto.subtle.exportKey('spki', keys.publicKey));
  const kid = createHash('sha256').update(spki).digest('hex');
  const jwk = await webcrypto.subtle.exportKey('jwk', keys.publicKey);
  const privateKeyPkcs8 = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey));
  const certificate = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: randomBytes(16)
      .toString('hex')
      .replace(/^[89a-f]/, '1'),
    name: `CN=${subject.replace(/[,=+<>#;\\"]/g, '')}`,
    notBefore: new Date(now.getTime() - 60_000),
    // Valid well past the rotation interval and the 7-day grace so clients never see it expire.
    notAfter: new Date(now.getTime() + 400 * 86_400_000),
    signingAlgorithm: algorithm,
    keys,
    extensions: [new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true)],
  });
  return {
    kid,
    privateKeyPkcs8,
    publicJwk: { kty: 'RSA', n: jwk.n!, e: jwk.e!, kid, alg: 'RS256', use: 'sig' },
    certificatePem: certificate.toString('pem'),
  };
}
