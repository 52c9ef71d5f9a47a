// The request context, normalised lazily for matching: each derived fact (lower-cased email, its
// domain, the parsed client address, upper-cased country) is computed the first time a rule asks
// and then reused by every other rule of the same evaluation.
import { type IpAddress, parseIp } from './ip.ts';
import type { Identity, RequestContext } from './types.ts';

const UNSET = Symbol('unset');

/** Case-insensitive equality against an already lower-cased string, allocation-free when `value` is lower case. */
export function equalsLower(value: string, lower: string): boolean {
  return value === lower || (value.length === lower.length && value.toLowerCase() === lower);
}

export class Facts {
  readonly identity: Identity | undefined;
  private emailValue: string | null | typeof UNSET = UNSET;
  private emailDomainValue: string | null | typeof UNSET = UNSET;
  private ipValue: IpAddress | null | typeof UNSET = UNSET;
  private countryValue: string | null | typeof UNSET = UNSET;

  constructor(readonly context: RequestContext) {
    this.identity = context.identity;
  }

  /** Lower-cased email of the identity: Access compares emails case-insensitively. */
  get email(): string | null {
    if (this.emailValue === UNSET) this.emailValue = this.identity?.email?.toLowerCase() ?? null;
    return this.emailValue;
  }

  /** Lower-cased part after the last "@" of the email: Access matches whole domains, not suffixes. */
  get emailDomain(): string | null {
    if (this.emailDomainValue === UNSET) {
      const email = this.email;
      const at = email === null ? -1 : email.lastIndexOf('@');
      this.emailDomainValue = at === -1 ? null : email!.slice(at + 1);
    }
    return this.emailDomainValue;
  }

  /** The client address, parsed once; null when absent or unparsable (matches no range). */
  get ip(): IpAddress | null {
    if (this.ipValue === UNSET) {
      const text = this.context.clientIp;
      this.ipValue = text === undefined ? null : parseIp(text);
    }
    return this.ipValue;
  }

  /** Upper-cased ISO country code of the request. */
  get country(): string | null {
    if (this.countryValue === UNSET) this.countryValue = this.context.country?.toUpperCase() ?? null;
    return this.countryValue;
  }

  get nowMs(): number {
    const { now } = this.context;
    return typeof now === 'number' ? now : now.getTime();
  }
}
