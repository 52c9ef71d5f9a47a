// Calls an app by its public URL while connecting to the gateway's listen address, like
// `curl --resolve`: Node's resolver does not map `*.localhost` to loopback on every system
// (ARCHITECTURE.md §2), but Gatehouse routes on the Host header, so the URL (and so the Host
// header) stays the app's and only the TCP connection is redirected to the one listener.
// Node's fetch ignores a `host` header set by the caller, hence a dispatcher of our own.
import { isIP } from 'node:net';
import { Agent, buildConnector, fetch as undiciFetch } from 'undici';

export type Fetch = typeof fetch;

/**
 * A fetch that opens connections for host names (`wiki.localhost`) to `listen` (`host:port`);
 * URLs that name an IP address go where they say. Without `listen`, the global fetch.
 */
export function fetchVia(listen: string | undefined): Fetch {
  if (!listen) return fetch;
  const url = new URL(`http://${listen}`);
  const connector = buildConnector({});
  const dispatcher = new Agent({
    connect: (options, callback) =>
      isIP(options.hostname)
        ? connector(options, callback)
        : connector({ ...options, hostname: url.hostname.replace(/^\[|\]$/g, ''), port: url.port }, callback),
  });
  return (async (input: Parameters<Fetch>[0], init?: RequestInit) => {
    // A global Request is not undici's own class: pass its parts instead.
    if (input instanceof Request) {
      const body = input.body ? await input.arrayBuffer() : undefined;
      return undiciFetch(input.url, {
        method: input.method,
        headers: [...input.headers],
        body,
        signal: input.signal,
        redirect: input.redirect,
        ...(init as object),
        dispatcher,
      } as never);
    }
    return undiciFetch(String(input), { ...(init as object), dispatcher } as never);
  }) as unknown as Fetch;
}
