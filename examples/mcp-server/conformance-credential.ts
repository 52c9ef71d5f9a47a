// Preloaded (`node --import`) into the MCP conformance runner by conformance.test.ts. The runner
// (@modelcontextprotocol/conformance) has no option to send a credential, but our MCP server
// acts only for a person: it answers 403 without a verified Cf-Access-Jwt-Assertion, and
// Gatehouse answers 401 without a token. This adds the header named in
// CONFORMANCE_CREDENTIAL ({"name": "...", "value": "..."}) to every request the runner makes,
// through undici's global dispatcher, which both the runner's fetch (the MCP SDK client) and its
// raw `undici.request` (the DNS rebinding scenario, which sets Host itself) go through.
// Nothing else is changed: requests still go straight to the URL the runner was given.
import { Agent, type Dispatcher, setGlobalDispatcher } from 'undici';

const credential = JSON.parse(process.env.CONFORMANCE_CREDENTIAL ?? 'null') as {
  name: string;
  value: string;
} | null;
if (!credential) throw new Error('CONFORMANCE_CREDENTIAL is not set');

/** undici's three header forms (flat array, iterable of pairs, record) as a record, plus ours. */
function withCredential(headers: Dispatcher.DispatchOptions['headers']): Record<string, string | string[]> {
  const merged: Record<string, string | string[]> = {};
  if (Array.isArray(headers)) {
    for (let i = 0; i + 1 < headers.length; i += 2) merged[String(headers[i])] = String(headers[i + 1]);
  } else if (headers && Symbol.iterator in headers) {
    for (const [name, value] of headers as Iterable<[string, string | string[] | undefined]>)
      if (value !== undefined) merged[name] = value;
  } else if (headers) {
    for (const [name, value] of Object.entries(headers)) if (value !== undefined) merged[name] = value;
  }
  merged[credential!.name] = credential!.value;
  return merged;
}

setGlobalDispatcher(
  new Agent().compose(
    (dispatch) => (options, handler) =>
      dispatch({ ...options, headers: withCredential(options.headers) }, handler),
  ),
);
