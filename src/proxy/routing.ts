// Routing: where a request goes (ingress rules, cloudflared's format and matching) and which
// Access application decides about it (app hostnames and paths, most specific wins). Both are
// compiled once per configuration into maps, so a lookup costs the same with 1 app or 10,000.
import type { IngressRule } from '../config/settings.ts';
import type { ProxyApp } from './config.ts';

/** Where an ingress rule sends traffic (ARCHITECTURE.md §2 "Origins"). */
export interface OriginTarget {
  /** Pools are shared by every rule with the same key (origin + connection options). */
  key: string;
  /** `scheme://host:port` of the origin. */
  origin: string;
  connectTimeoutMs: number;
  noTLSVerify: boolean;
  httpHostHeader: string | null;
  /** cloudflared's `caPool`: a path to a PEM file with the CAs to trust for this origin. */
  caPool: string | null;
}

export type IngressTarget = { kind: 'status'; status: number } | { kind: 'origin'; origin: OriginTarget };

interface CompiledIngressRule {
  index: number;
  /** False for the catch-all (no hostname, or `*`): such a rule does not make a host "ours". */
  namesHost: boolean;
  path: RegExp | null;
  target: IngressTarget;
}

export interface Route {
  /** The application whose policies apply, or null. (Routes are shared between requests: read-only.) */
  readonly app: ProxyApp | null;
  /** The path of the app hostname entry that matched (`/admin`), '' for a whole host. */
  readonly appPath: string;
  /** The ingress target, or null when no rule matched (a configuration without a catch-all). */
  readonly target: IngressTarget | null;
  /** True when an ingress rule names this host explicitly (not through the catch-all). */
  readonly hostRouted: boolean;
}

/** cloudflared's default `connectTimeout` is 30s. */
const DEFAULT_CONNECT_TIMEOUT_MS = 30_000;
/** Bound on remembered per-host ingress candidate lists; Host headers are attacker-chosen. */
const HOST_CACHE_LIMIT = 4096;

interface AppEntry {
  app: ProxyApp;
  order: number;
  labels: readonly string[];
  wildcardLabels: number;
  segments: readonly string[];
  literalSegments: number;
  /** `/seg/…` of the entry, '' for a whole host: Route.appPath. */
  path: string;
}

/**
 * The compiled routing tables of one configuration. Rebuilt (not mutated) when the
 * configuration changes, so a request in flight keeps a consistent view.
 */
export class RoutingTable {
  private readonly exactHosts = new Map<string, AppEntry[]>();
  /** Patterns with `*` labels, keyed by the literal labels after the last wildcard label. */
  private readonly wildcardHosts = new Map<string, AppEntry[]>();
  private readonly ingressExact = new Map<string, CompiledIngressRule[]>();
  /** `*.example.com` rules keyed by `.example.com` (cloudflared matches any depth of subdomain). */
  private readonly ingressSuffix = new Map<string, CompiledIngressRule[]>();
  private readonly ingressCatchAll: CompiledIngressRule[] = [];
  /** What each host seen so far can route to (bounded: Host headers are attacker-chosen). */
  private readonly hosts = new Map<string, HostRoutes>();
  readonly appsByAud = new Map<string, ProxyApp>();
  readonly appsByClientId = new Map<string, ProxyApp>();

  constructor(apps: readonly ProxyApp[], ingress: readonly IngressRule[]) {
    let order = 0;
    for (const app of apps) {
      this.appsByAud.set(app.aud, app);
      if (app.oidcClientId) this.appsByClientId.set(app.oidcClientId, app);
      for (const host of app.hosts) {
        const entry = parseAppHost(app, host, order++);
        if (!entry) continue;
        const last = lastWildcardLabel(entry.labels);
        const table = last === -1 ? this.exactHosts : this.wildcardHosts;
        const key = entry.labels.slice(last + 1).join('.');
        const list = table.get(key);
        if (list) list.push(entry);
        else table.set(key, [entry]);
      }
    }
    ingress.forEach((rule, index) => {
      const compiled = compileIngressRule(rule, index);
      const hostname = rule.hostname?.toLowerCase();
      if (!hostname || hostname === '*') this.ingressCatchAll.push(compiled);
      else if (hostname.startsWith('*.')) push(this.ingressSuffix, hostname.slice(1), compiled);
      else push(this.ingressExact, hostname, compiled);
    });
  }

  /** `host` is lower case without the port; `path` is the decoded, normalised path. */
  route(host: string, path: string): Route {
    const routes = this.hostRoutes(host);
    if (routes.pathless) return routes.pathless;
    return routeFor(routes, path);
  }

  /** Every distinct origin the ingress rules name (the forwarder opens one pool per key). */
  origins(): OriginTarget[] {
    const all = [
      ...this.ingressCatchAll,
      ...[...this.ingressExact.values()].flat(),
      ...[...this.ingressSuffix.values()].flat(),
    ];
    const byKey = new Map<string, OriginTarget>();
    for (const rule of all)
      if (rule.target.kind === 'origin') byKey.set(rule.target.origin.key, rule.target.origin);
    return [...byKey.values()];
  }

  /**
   * The app entries whose hostname matches `host`, and the ingress rules that may apply to it,
   * computed once per host; with the route itself when the path cannot change it, which is the
   * case for most hosts, so a request then costs one map lookup.
   */
  private hostRoutes(host: string): HostRoutes {
    const cached = this.hosts.get(host);
    if (cached) return cached;
    const labels = host.split('.');
    const apps = (this.exactHosts.get(host) ?? []).filter((entry) => hostMatches(entry.labels, labels));
    if (this.wildcardHosts.size > 0) {
      // Each suffix of the host after a dot, the host itself and '' is one map lookup.
      for (let from = 0; ; ) {
        for (const entry of this.wildcardHosts.get(host.slice(from)) ?? []) {
          if (hostMatches(entry.labels, labels)) apps.push(entry);
        }
        if (from > host.length) break;
        const dot = host.indexOf('.', from);
        from = dot === -1 ? host.length + 1 : dot + 1;
      }
    }
    const ingress = [...(this.ingressExact.get(host) ?? []), ...this.ingressCatchAll];
    for (let dot = host.indexOf('.'); dot !== -1; dot = host.indexOf('.', dot + 1)) {
      ingress.push(...(this.ingressSuffix.get(host.slice(dot)) ?? []));
    }
    // First match wins in declaration order (cloudflared), whatever table a rule came from.
    ingress.sort((a, b) => a.index - b.index);
    const routes: HostRoutes = { apps, ingress, pathless: null };
    const pathDependent = apps.some((entry) => entry.segments.length > 0) || Boolean(ingress[0]?.path);
    if (!pathDependent) routes.pathless = routeFor(routes, '/');
    if (this.hosts.size >= HOST_CACHE_LIMIT) this.hosts.clear();
    this.hosts.set(host, routes);
    return routes;
  }
}

/** What a host can route to (RoutingTable.hostRoutes). */
interface HostRoutes {
  apps: readonly AppEntry[];
  ingress: readonly CompiledIngressRule[];
  /** The host's one route when no app path and no leading ingress `path` makes it depend on the path. */
  pathless: Route | null;
}

/**
 * The route of `path` among a host's candidates. The most specific application wins: "the most
 * specific path wins; it does not inherit from the parent" [D: …/policies/app-paths.mdx];
 * Gatehouse ranks by path depth, then literal path segments, then literal host labels, then
 * declaration order. The first ingress rule whose `path` matches gives the target.
 */
function routeFor(routes: HostRoutes, path: string): Route {
  const segments = path
    .toLowerCase()
    .split('/')
    .filter((segment) => segment !== '');
  let best: AppEntry | null = null;
  for (const entry of routes.apps) {
    if (!pathMatches(entry.segments, segments)) continue;
    if (!best || moreSpecific(entry, best)) best = entry;
  }
  const app = best?.app ?? null;
  const appPath = best ? best.path : '';
  for (const rule of routes.ingress) {
    if (rule.path && !rule.path.test(path)) continue;
    return { app, appPath, target: rule.target, hostRouted: rule.namesHost };
  }
  return { app, appPath, target: null, hostRouted: false };
}

function push<K, V>(map: Map<K, V[]>, key: K, value: V): void {
  const list = map.get(key);
  if (list) list.push(value);
  else map.set(key, [value]);
}

function lastWildcardLabel(labels: readonly string[]): number {
  for (let i = labels.length - 1; i >= 0; i--) if (labels[i]!.includes('*')) return i;
  return -1;
}

function parseAppHost(app: ProxyApp, text: string, order: number): AppEntry | null {
  const trimmed = text
    .trim()
    .toLowerCase()
    .replace(/^https?:\/\//, '');
  const slash = trimmed.indexOf('/');
  const hostPort = slash === -1 ? trimmed : trimmed.slice(0, slash);
  // Ports and query strings are not part of matching (spec §3.3).
  const host = stripPort(hostPort).replace(/\.$/, '');
  if (!host) return null;
  const path = slash === -1 ? '' : trimmed.slice(slash).split('?')[0]!;
  const labels = host.split('.');
  const segments = path.split('/').filter((segment) => segment !== '');
  return {
    app,
    order,
    labels,
    wildcardLabels: labels.filter((label) => label.includes('*')).length,
    segments,
    literalSegments: segments.filter((segment) => !segment.includes('*')).length,
    path: segments.map((segment) => `/${segment}`).join(''),
  };
}

/** `*` inside a pattern part stands for any run of characters within that one label/segment. */
function partMatches(pattern: string, value: string): boolean {
  if (pattern === '*') return value !== '';
  if (!pattern.includes('*')) return pattern === value;
  const pieces = pattern.split('*');
  if (!value.startsWith(pieces[0]!) || !value.endsWith(pieces[pieces.length - 1]!)) return false;
  let at = pieces[0]!.length;
  for (let i = 1; i < pieces.length - 1; i++) {
    const found = value.indexOf(pieces[i]!, at);
    if (found === -1) return false;
    at = found + pieces[i]!.length;
  }
  return at <= value.length - pieces[pieces.length - 1]!.length;
}

function hostMatches(pattern: readonly string[], labels: readonly string[]): boolean {
  if (pattern.length !== labels.length) return false;
  for (let i = 0; i < pattern.length; i++) if (!partMatches(pattern[i]!, labels[i]!)) return false;
  return true;
}

/** An app path covers itself and everything below it, segment by segment. */
function pathMatches(pattern: readonly string[], segments: readonly string[]): boolean {
  if (pattern.length > segments.length) return false;
  for (let i = 0; i < pattern.length; i++) if (!partMatches(pattern[i]!, segments[i]!)) return false;
  return true;
}

function moreSpecific(a: AppEntry, b: AppEntry): boolean {
  if (a.segments.length !== b.segments.length) return a.segments.length > b.segments.length;
  if (a.literalSegments !== b.literalSegments) return a.literalSegments > b.literalSegments;
  if (a.wildcardLabels !== b.wildcardLabels) return a.wildcardLabels < b.wildcardLabels;
  return a.order < b.order;
}

function compileIngressRule(rule: IngressRule, index: number): CompiledIngressRule {
  const hostname = rule.hostname?.toLowerCase();
  return {
    index,
    namesHost: Boolean(hostname && hostname !== '*'),
    // cloudflared matches `path` as an unanchored Go regular expression against the URL path.
    path: rule.path ? new RegExp(rule.path) : null,
    target: compileService(rule),
  };
}

function compileService(rule: IngressRule): IngressTarget {
  const status = /^http_status:(\d{3})$/.exec(rule.service);
  if (status) return { kind: 'status', status: Number(status[1]) };
  const url = new URL(rule.service);
  const options = rule.originRequest ?? {};
  const origin: Omit<OriginTarget, 'key'> = {
    origin: url.origin,
    connectTimeoutMs: options.connectTimeout
      ? parseShortDuration(options.connectTimeout)
      : DEFAULT_CONNECT_TIMEOUT_MS,
    noTLSVerify: options.noTLSVerify ?? false,
    httpHostHeader: options.httpHostHeader ?? null,
    caPool: options.caPool ?? null,
  };
  const key = JSON.stringify([origin.origin, origin.connectTimeoutMs, origin.noTLSVerify, origin.caPool]);
  return { kind: 'origin', origin: { key, ...origin } };
}

/** The settings schema admits `<n>ms`, `<n>s` and `<n>m` for connectTimeout. */
function parseShortDuration(text: string): number {
  const match = /^(\d+)(ms|s|m)$/.exec(text)!;
  const unit = match[2] === 'ms' ? 1 : match[2] === 's' ? 1000 : 60_000;
  return Number(match[1]) * unit;
}

/** `example.com:8443` → `example.com`; `[::1]:80` → `[::1]`. */
export function stripPort(host: string): string {
  if (host.startsWith('[')) {
    const end = host.indexOf(']');
    return end === -1 ? host : host.slice(0, end + 1);
  }
  const colon = host.lastIndexOf(':');
  return colon === -1 ? host : host.slice(0, colon);
}

export interface RequestTarget {
  /** The path to send to the origin: dot segments resolved (RFC 3986 §5.2.4), otherwise as sent. */
  forwardPath: string;
  /** `?…` or ''. */
  query: string;
  /**
   * The path used for matching: percent-decoded, backslashes as slashes, repeated slashes
   * collapsed, dot segments resolved. It is the most an origin could make of the raw path, so
   * `/public/..%2Fadmin` is judged by the policies of `/admin`.
   */
  matchPath: string;
}

/** Characters after which the matching path may differ from the raw one. */
const NEEDS_NORMALISING = /[%\\.]|\/\//;

/** Parses an origin-form request target; null for anything else (answered with 400). */
export function parseRequestTarget(url: string): RequestTarget | null {
  if (!url.startsWith('/')) return null;
  const question = url.indexOf('?');
  const rawPath = question === -1 ? url : url.slice(0, question);
  const query = question === -1 ? '' : url.slice(question);
  // Most paths hold nothing to decode or normalise: one scan instead of four passes.
  if (!NEEDS_NORMALISING.test(rawPath)) return { forwardPath: rawPath, query, matchPath: rawPath };
  let decoded: string;
  try {
    decoded = decodeURIComponent(rawPath);
  } catch {
    return null;
  }
  if (decoded.includes('\0')) return null;
  const matchPath = removeDotSegments(decoded.replace(/\\/g, '/').replace(/\/{2,}/g, '/'));
  const forwardPath = removeDotSegments(rawPath.replace(/%2e/gi, '.'));
  return { forwardPath, query, matchPath };
}

/** RFC 3986 §5.2.4, for absolute paths. */
function removeDotSegments(path: string): string {
  if (!path.includes('.')) return path;
  const output: string[] = [];
  const segments = path.split('/');
  for (let i = 1; i < segments.length; i++) {
    const segment = segments[i]!;
    if (segment === '..') output.pop();
    if (segment === '.' || segment === '..') {
      if (i === segments.length - 1) output.push('');
      continue;
    }
    output.push(segment);
  }
  return `/${output.join('/')}`;
}
