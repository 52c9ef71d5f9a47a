// Which app a managed-OAuth document belongs to. A path-scoped app (`mcp.example.com/mcp`) has
// its protected-resource metadata at the path-inserted `/.well-known/oauth-protected-resource/mcp`
// (RFC 9728 §3.1) and its issuer's at `/.well-known/oauth-authorization-server/mcp/cdn-cgi/access/
// oauth` (RFC 8414 §3.1): outside the app's path, so routing by the request path would miss it.
// Those documents are routed by the path they name, when that path is a managed-OAuth app's.
import type { Route, RoutingTable } from './routing.ts';

export const PRM_PATH = '/.well-known/oauth-protected-resource';
export const AS_METADATA_PATH = '/.well-known/oauth-authorization-server';

/** The path a request is about: the inserted path of a path-inserted well-known URL, else itself. */
export function describedPath(path: string): string {
  for (const prefix of [PRM_PATH, AS_METADATA_PATH]) {
    if (path.startsWith(`${prefix}/`)) return path.slice(prefix.length);
  }
  return path;
}

/** `route` (of `path` at `host`), or the route of the managed-OAuth app the document names. */
export function managedOAuthRoute(table: RoutingTable, host: string, path: string, route: Route): Route {
  const described = describedPath(path);
  if (described === path) return route;
  const owner = table.route(host, described);
  return owner.app?.managedOAuth ? { ...route, app: owner.app, appPath: owner.appPath } : route;
}
