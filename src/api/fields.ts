// Screening of request bodies before their zod schema: Cloudflare objects carry read-only
// fields (clients PUT back what they GET), and fields for features Gatehouse does not enforce.
// Read-only fields are dropped; an unenforced feature switched on is refused naming the field,
// because accepting it would promise security that nothing checks; anything else unknown is
// refused so a typo never passes silently.
import { invalidRequest } from './errors.ts';

export interface FieldScreen {
  /** Fields the schema parses. */
  accepted: readonly string[];
  /** Server-set fields a client may echo back; ignored. */
  readOnly: readonly string[];
  /** Fields Gatehouse does not enforce: refused when `promises(value)`, else ignored. */
  unenforced: Readonly<Record<string, { promises: (value: unknown) => boolean; why: string }>>;
}

/** The body without read-only and harmless unenforced fields; throws 400 on anything else. */
export function screenFields(body: unknown, screen: FieldScreen, prefix = ''): Record<string, unknown> {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw invalidRequest(`${prefix || 'body'}: expected a JSON object`);
  }
  const kept: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(body)) {
    const field = prefix ? `${prefix}.${key}` : key;
    if (screen.accepted.includes(key)) {
      kept[key] = value;
    } else if (Object.hasOwn(screen.unenforced, key)) {
      const rule = screen.unenforced[key]!;
      if (rule.promises(value)) throw invalidRequest(`${field} is not supported by Gatehouse: ${rule.why}`);
    } else if (!screen.readOnly.includes(key)) {
      throw invalidRequest(`unknown field ${JSON.stringify(field)}`);
    }
  }
  return kept;
}

/** A boolean feature flag that is switched on. */
export const isTrue = (value: unknown): boolean => value === true;

/** Anything but absent, null, false, an empty array or an empty object. */
export function isSet(value: unknown): boolean {
  if (value === undefined || value === null || value === false) return false;
  if (Array.isArray(value)) return value.length > 0;
  if (typeof value === 'object') return Object.keys(value).length > 0;
  return true;
}

/** `mfa_config`: only "no MFA" (absent, empty, or `mfa_disabled: true` alone) is what Gatehouse does. */
export function asksForMfa(value: unknown): boolean {
  if (!isSet(value)) return false;
  if (typeof value !== 'object' || value === null) return true;
  const config = value as Record<string, unknown>;
  return (
    config.mfa_disabled !== true || isSet(config.allowed_authenticators) || isSet(config.session_duration)
  );
}

/** `scim_config`: provisioning is refused only when enabled (Cloudflare's default for the object is on). */
export function enablesScim(value: unknown): boolean {
  if (!isSet(value)) return false;
  return (value as { enabled?: unknown }).enabled !== false;
}
